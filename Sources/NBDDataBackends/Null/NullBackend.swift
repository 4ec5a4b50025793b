import Glibc
import NBDCore

/// One connection's view of a ``NullBackendProvider``'s export: reads return zeroes, writes are
/// discarded, and block status reports one hole that reads as zeroes.
public struct NullBackend: BlockBackend {
    public let capabilities: Capabilities

    init(size: UInt64, isReadOnly: Bool) {
        let capabilities = Capabilities(
            size: size, isWritable: true, canFlush: true,
            // Nothing is kept, so every write is as durable as it will ever be when it returns.
            fua: .native, canTrim: true, canZero: true, canFastZero: true,
            // Nothing to prefetch: a cache request succeeds at once, as in nbdkit.
            cache: .native, canExtents: true,
            // No state at all, so every connection trivially sees the same data.
            canMultiConn: true)
        self.capabilities = isReadOnly ? capabilities.readOnly : capabilities
    }

    /// Zeroes the server's reply buffer in place: no allocation, one `memset`.
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if let base = buffer.baseAddress { memset(base, 0, buffer.count) }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    /// The whole range is one hole that reads as zeroes.
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.hole(count)]
    }
}

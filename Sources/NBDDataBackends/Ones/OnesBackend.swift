import Glibc
import NBDCore

/// One connection's view of a ``OnesBackendProvider``'s export: every byte reads as the provider's
/// byte (0xff unless `byte=` says otherwise); writes, zeroes and trims are discarded.
public struct OnesBackend: BlockBackend {
    public let capabilities: Capabilities
    @usableFromInline let byte: UInt8

    init(size: UInt64, byte: UInt8, isReadOnly: Bool) {
        self.byte = byte
        let capabilities = Capabilities(
            size: size, isWritable: true, canFlush: true, fua: .native, canTrim: true, canZero: true,
            canFastZero: true, cache: .native, canExtents: true, canMultiConn: true)
        self.capabilities = isReadOnly ? capabilities.readOnly : capabilities
    }

    /// Fills the server's reply buffer in place with one `memset`.
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if let base = buffer.baseAddress { memset(base, Int32(byte), buffer.count) }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    /// Discarded, as in nbdkit: the range still reads as the fill byte afterwards.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    /// The whole range is allocated data (even with `byte=0`, as nbdkit reports it).
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.data(count)]
    }
}

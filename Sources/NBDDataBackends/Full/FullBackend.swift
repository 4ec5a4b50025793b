import Glibc
import NBDCore

/// One connection's view of a ``FullBackendProvider``'s export: a thin-provisioned disk whose host
/// ran out of space. Reads return zeroes; writes, zeroes and trims fail with `ENOSPC`.
public struct FullBackend: BlockBackend {
    public let capabilities: Capabilities

    init(size: UInt64, isReadOnly: Bool) {
        // As nbdkit's full plugin: no flush (so no FUA), zero and trim advertised so that a client
        // sees them fail with ENOSPC, and fast zero advertised so that it is refused with ENOTSUP.
        let capabilities = Capabilities(
            size: size, isWritable: true, canFlush: false, fua: .none, canTrim: true, canZero: true,
            canFastZero: true, cache: .native, canExtents: true, canMultiConn: true)
        self.capabilities = isReadOnly ? capabilities.readOnly : capabilities
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if let base = buffer.baseAddress { memset(base, 0, buffer.count) }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.noSpace, "the full backend has no space: every write fails")
    }

    /// A fast zero is refused with `ENOTSUP` (writing zeroes here is never fast: it fails); any
    /// other zero fails with `ENOSPC`, as a write would.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if flags.contains(.fastZero) {
            throw NBDError(.notSupported, "the full backend cannot zero fast")
        }
        throw NBDError(.noSpace, "the full backend has no space: every zero request fails")
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.noSpace, "the full backend has no space: every trim fails")
    }

    /// The whole range is one hole that reads as zeroes.
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.hole(count)]
    }
}

import NBDCore

/// One connection's view of a ``ZeroBackendProvider``'s export: zero bytes long and read-only, so
/// the server refuses every request that names a byte before it reaches this backend.
public struct ZeroBackend: BlockBackend {
    public let capabilities = Capabilities(
        size: 0, isWritable: false, canFlush: false, fua: .none, canTrim: false, canZero: false,
        canFastZero: false, cache: .native, canExtents: false, canMultiConn: true)

    init() {}

    /// Only empty reads can arrive (the export has no bytes); they have nothing to fill.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        guard buffer.isEmpty else {
            throw NBDError(.ioError, "the zero backend has no bytes to read (offset \(offset), \(buffer.count) bytes)")
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "the zero backend is read-only")
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "the zero backend is read-only")
    }
}

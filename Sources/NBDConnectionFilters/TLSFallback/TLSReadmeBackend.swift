import NBDCore

/// The export a plaintext client sees under the tls-fallback filter: 512 read-only bytes holding a
/// message, padded with zero bytes. Nothing below the filter is opened for it.
public struct TLSReadmeBackend: BlockBackend {
    /// The 512 bytes served.
    public let contents: [UInt8]
    public let capabilities: Capabilities

    /// The export's size, as nbdkit's filter: one 512-byte sector.
    public static var size: Int { 512 }

    /// Serves `message`, cut to 512 bytes or padded with zero bytes to 512.
    public init(message: String) {
        var bytes = Array(message.utf8.prefix(Self.size))
        bytes += [UInt8](repeating: 0, count: Self.size - bytes.count)
        contents = bytes
        capabilities = Capabilities(
            size: UInt64(Self.size), isWritable: false, canFlush: false, fua: .none, canTrim: false,
            canZero: false, canFastZero: false, cache: .none, canExtents: false, canMultiConn: false)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        // The server keeps requests inside the 512 bytes.
        contents.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[Int(offset)..<Int(offset) + buffer.count]))
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "tls-fallback: the plaintext export is read-only")
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "tls-fallback: the plaintext export is read-only")
    }
}

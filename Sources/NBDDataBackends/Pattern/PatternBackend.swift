import NBDCore

/// One connection's view of a ``PatternBackendProvider``'s export: read-only, each 8-byte word
/// holding its own offset as a big-endian 64-bit number.
public struct PatternBackend: BlockBackend {
    public let capabilities: Capabilities

    init(size: UInt64) {
        // As nbdkit's pattern plugin: read-only, cache requests succeed at once, no block status
        // (everything is data).
        capabilities = Capabilities(
            size: size, isWritable: false, canFlush: false, fua: .none, canTrim: false, canZero: false,
            canFastZero: false, cache: .native, canExtents: false, canMultiConn: true)
    }

    /// Writes the pattern straight into the server's reply buffer: one 8-byte store per word, a
    /// partial word at each unaligned end, and no allocation.
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        Self.fill(buffer, at: offset)
    }

    /// Fills `buffer` with the bytes of the pattern starting at `offset`.
    @inlinable
    static func fill(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) {
        guard let base = buffer.baseAddress else { return }
        let count = buffer.count
        var index = 0
        var word = offset & ~7
        let skip = Int(offset & 7)
        if skip != 0 {
            let length = min(8 - skip, count)
            withUnsafeBytes(of: word.bigEndian) { bytes in
                (base).copyMemory(from: bytes.baseAddress! + skip, byteCount: length)
            }
            index = length
            word &+= 8
        }
        while count - index >= 8 {
            base.storeBytes(of: word.bigEndian, toByteOffset: index, as: UInt64.self)
            index += 8
            word &+= 8
        }
        if index < count {
            let length = count - index
            withUnsafeBytes(of: word.bigEndian) { bytes in
                (base + index).copyMemory(from: bytes.baseAddress!, byteCount: length)
            }
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "the pattern backend is read-only")
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "the pattern backend is read-only")
    }
}

import NBDCore

/// One connection's view of a ``RandomBackendProvider``'s export: pseudo-random bytes that depend
/// only on the seed and their offset. A write succeeds only if it writes the bytes already there
/// (`EIO` otherwise), so that a copy from the export onto itself checks a copying tool.
public struct RandomBackend: BlockBackend {
    public let capabilities: Capabilities
    let seed: UInt64

    init(size: UInt64, seed: UInt32, isReadOnly: Bool) {
        self.seed = UInt64(seed)
        // As nbdkit's random plugin: no flush, trim and zero advertised but refused with EIO
        // (nothing here can become zero), no block status.
        let capabilities = Capabilities(
            size: size, isWritable: true, canFlush: false, fua: .none, canTrim: true, canZero: true,
            canFastZero: false, cache: .native, canExtents: false, canMultiConn: true)
        self.capabilities = isReadOnly ? capabilities.readOnly : capabilities
    }

    /// The byte at `offset`: the third output of a generator seeded with `seed + offset`, as nbdkit
    /// computes it, so any byte can be read without generating the ones before it.
    @inline(__always)
    func byte(at offset: UInt64) -> UInt8 {
        var generator = Xoshiro256StarStar(seed: seed &+ offset)
        _ = generator.next()
        _ = generator.next()
        return UInt8(truncatingIfNeeded: generator.next())
    }

    /// Generates straight into the server's reply buffer, without allocating.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        for index in 0..<buffer.count {
            buffer[index] = byte(at: offset &+ UInt64(index))
        }
    }

    /// Succeeds only if `data` is what the export already holds there.
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        for index in 0..<data.count where data[index] != byte(at: offset &+ UInt64(index)) {
            throw NBDError(
                .ioError,
                "data written at offset \(offset &+ UInt64(index)) does not match the random backend's data (seed \(seed))"
            )
        }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.ioError, "the random backend holds no zeroes: a zero request cannot match its data")
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.ioError, "the random backend cannot trim: its data is not sparse")
    }
}

import Glibc
import NBDCore

/// One connection's view of a ``SparseRandomBackendProvider``'s export: runs of 4 KiB blocks of
/// random data between holes of zeroes.
///
/// Writes succeed only if they write what is already there, and trims and zeroes only over holes
/// (`EIO` otherwise), so copying the export onto itself checks a copying tool.
public struct SparseRandomBackend: BlockBackend {
    public let capabilities: Capabilities
    let map: SparseRandomMap
    let seed: UInt64
    let isRandomContent: Bool

    init(map: SparseRandomMap, size: UInt64, seed: UInt32, isRandomContent: Bool, isReadOnly: Bool) {
        self.map = map
        self.seed = UInt64(seed)
        self.isRandomContent = isRandomContent
        // As nbdkit's sparse-random plugin: flush (a no-op that nbdcopy --flush needs), trim and zero
        // (over holes only), block status, no fast zero.
        let capabilities = Capabilities(
            size: size, isWritable: true, canFlush: true, fua: .native, canTrim: true, canZero: true,
            canFastZero: false, cache: .native, canExtents: true, canMultiConn: true)
        self.capabilities = isReadOnly ? capabilities.readOnly : capabilities
    }

    private static var blockSize: UInt64 { SparseRandomMap.blockSize }

    /// Calls `body` once per block the range touches, with the block number, the offset within the
    /// block and the length within it.
    @inline(__always)
    private func forEachBlock(
        count: UInt64, at offset: UInt64, _ body: (UInt64, Int, Int) throws(NBDError) -> Void
    ) throws(NBDError) {
        var position = offset
        let end = offset + count
        while position < end {
            let block = position / Self.blockSize
            let within = Int(position % Self.blockSize)
            let length = Int(min(Self.blockSize - UInt64(within), end - position))
            try body(block, within, length)
            position += UInt64(length)
        }
    }

    /// Writes bytes `within..<within+length` of data block `block` to `destination`.
    ///
    /// The block's data derives from the seed plus the block's offset, as nbdkit's does for
    /// block-aligned reads: one non-zero byte repeated, or, with random-content, one generator
    /// output per byte.
    private func generate(block: UInt64, within: Int, length: Int, into destination: UnsafeMutableRawPointer) {
        var generator = Xoshiro256StarStar(seed: seed &+ block * Self.blockSize)
        if !isRandomContent {
            var value = UInt8(truncatingIfNeeded: generator.next())
            if value == 0 { value = 1 }
            memset(destination, Int32(value), length)
            return
        }
        for _ in 0..<within { _ = generator.next() }
        for index in 0..<length {
            destination.storeBytes(of: UInt8(truncatingIfNeeded: generator.next()), toByteOffset: index, as: UInt8.self)
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        guard let base = buffer.baseAddress else { return }
        var index = 0
        try forEachBlock(count: UInt64(buffer.count), at: offset) { (block, within, length) throws(NBDError) in
            if map.isData(block) {
                generate(block: block, within: within, length: length, into: base + index)
            } else {
                memset(base + index, 0, length)
            }
            index += length
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard let source = data.baseAddress else { return }
        var expected = [UInt8](repeating: 0, count: Int(Self.blockSize))
        var index = 0
        try forEachBlock(count: UInt64(data.count), at: offset) { (block, within, length) throws(NBDError) in
            let matches: Bool
            if map.isData(block) {
                matches = expected.withUnsafeMutableBytes { scratch in
                    generate(block: block, within: within, length: length, into: scratch.baseAddress!)
                    return memcmp(scratch.baseAddress!, source + index, length) == 0
                }
            } else {
                matches = UnsafeRawBufferPointer(start: source + index, count: length).allSatisfy { $0 == 0 }
            }
            guard matches else {
                throw NBDError(
                    .ioError,
                    "data written at offset \(offset + UInt64(index)) does not match the sparse-random backend's data")
            }
            index += length
        }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try requireHoles(count: count, at: offset, "zero")
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try requireHoles(count: count, at: offset, "trim")
    }

    private func requireHoles(count: UInt64, at offset: UInt64, _ operation: String) throws(NBDError) {
        try forEachBlock(count: count, at: offset) { (block, _, _) throws(NBDError) in
            if map.isData(block) {
                throw NBDError(
                    .ioError,
                    "cannot \(operation) block \(block) (offset \(block * Self.blockSize)): the sparse-random backend holds data there"
                )
            }
        }
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {}

    /// Runs of data blocks and of holes (which read as zeroes), at most 4096 runs per call.
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        var extents: [Extent] = []
        let one = flags.contains(.requestOne)
        var position = offset
        let end = offset + count
        while position < end && extents.count < 4096 {
            var block = position / Self.blockSize
            let isData = map.isData(block)
            block += 1
            while block < map.blockCount && block * Self.blockSize < end && map.isData(block) == isData {
                block += 1
            }
            let runEnd = min(block * Self.blockSize, end)
            extents.append(isData ? .data(runEnd - position) : .hole(runEnd - position))
            position = runEnd
            if one { break }
        }
        return extents
    }
}

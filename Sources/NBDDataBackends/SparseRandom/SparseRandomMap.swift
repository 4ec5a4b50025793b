/// Which 4 KiB blocks of a sparse-random export hold data: one bit per block, drawn once when the
/// export is created.
///
/// The map is a two-state chain walked block by block, as nbdkit draws it: in a run of data the
/// chance of switching to a hole is 1 / (runlength in blocks); in a hole the chance of switching to
/// data is chosen so that `percent` of the blocks end up holding data. The draws come from the same
/// generator and seeding as nbdkit's, so a seed gives nbdkit's map.
struct SparseRandomMap: Sendable {
    /// The block size the map describes: 4 KiB, as nbdkit's.
    static let blockSize: UInt64 = 4096

    private let words: [UInt64]
    /// How many blocks the map covers (the last one may be partial).
    let blockCount: UInt64

    init(size: UInt64, seed: UInt32, percent: Double, runLength: UInt64) {
        blockCount = (size + Self.blockSize - 1) / Self.blockSize
        var words = [UInt64](repeating: 0, count: Int((blockCount + 63) / 64))
        if percent >= 100 {
            for index in 0..<Int(blockCount) { words[index >> 6] |= 1 << UInt64(index & 63) }
        } else if percent > 0 {
            let dataToHole = 1 / (Double(runLength) / Double(Self.blockSize))
            let holeToData = (percent / 100) * dataToHole / (1 - percent / 100)
            var generator = Xoshiro256StarStar(seed: UInt64(seed))
            var inData = false
            for index in 0..<Int(blockCount) {
                if inData { words[index >> 6] |= 1 << UInt64(index & 63) }
                let leave = inData ? dataToHole : holeToData
                if Double(generator.next()) <= leave * Double(UInt64.max) { inData.toggle() }
            }
        }
        self.words = words
    }

    /// Whether block `block` holds data.
    @inline(__always)
    func isData(_ block: UInt64) -> Bool {
        words[Int(block >> 6)] & (1 << (block & 63)) != 0
    }

    /// How many blocks hold data.
    var dataBlockCount: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }
}

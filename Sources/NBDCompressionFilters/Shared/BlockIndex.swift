import NBDCore

/// The blocks of a file of independently compressed blocks, in file order, with their uncompressed
/// offsets: what the xz and lzip filters seek with.
struct BlockIndex: Sendable {
    /// The blocks holding data, ordered by uncompressed offset (and compressed offset).
    let blocks: [CompressedBlock]
    /// The uncompressed size of the file.
    let size: UInt64
    /// The largest block's uncompressed size.
    let largestBlock: UInt64

    /// Numbers the uncompressed bytes of `blocks` (in file order) from the start of the file.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the sizes add up to more than an export can hold.
    init(_ blocks: [CompressedBlock], format: String) throws(NBDError) {
        var numbered: [CompressedBlock] = []
        var offset: UInt64 = 0
        var largest: UInt64 = 0
        for var block in blocks {
            block.uncompressedOffset = offset
            let (sum, overflow) = offset.addingReportingOverflow(block.uncompressedSize)
            guard !overflow, sum <= UInt64(Int64.max) else {
                throw NBDError(
                    .invalidArgument, "\(format): the file is corrupt: its uncompressed size exceeds 2^63 bytes")
            }
            offset = sum
            largest = max(largest, block.uncompressedSize)
            // Empty blocks hold no byte a read could ask for.
            if block.uncompressedSize > 0 { numbered.append(block) }
        }
        self.blocks = numbered
        self.size = offset
        self.largestBlock = largest
    }

    /// The index in ``blocks`` of the block holding uncompressed byte `offset` (below ``size``).
    func blockIndex(containing offset: UInt64) -> Int {
        var low = 0
        var high = blocks.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if blocks[middle].uncompressedOffset <= offset { low = middle } else { high = middle - 1 }
        }
        return low
    }
}

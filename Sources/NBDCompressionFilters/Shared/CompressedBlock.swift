/// One independently compressed block of a file (an xz block, an lzip member), as the file's index
/// describes it: where its compressed bytes are and which uncompressed bytes they hold. Such files
/// can be entered only at block boundaries.
struct CompressedBlock: Sendable, Hashable {
    /// Where the block's data starts in the uncompressed file.
    var uncompressedOffset: UInt64
    /// How many uncompressed bytes the block holds.
    var uncompressedSize: UInt64
    /// Where the block (its header) starts in the compressed file.
    var compressedOffset: UInt64
    /// The block's size in the compressed file, everything included.
    var totalSize: UInt64
    /// xz: the block's size without its padding, which the block decoder checks.
    var unpaddedSize: UInt64 = 0
    /// xz: the integrity check of the block's stream (`lzma_check`).
    var check: UInt32 = 0
}

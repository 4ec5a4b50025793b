/// One block of an xz file, as the stream index describes it: where its compressed bytes are and
/// which uncompressed bytes they hold. xz files can be entered only at block boundaries.
struct XZBlock: Sendable, Hashable {
    /// Where the block's data starts in the uncompressed file.
    var uncompressedOffset: UInt64
    /// How many uncompressed bytes the block holds.
    var uncompressedSize: UInt64
    /// Where the block (its header) starts in the compressed file.
    var compressedOffset: UInt64
    /// The block's size in the compressed file: header, data, padding and check.
    var totalSize: UInt64
    /// The block's size without its padding, which the block decoder checks.
    var unpaddedSize: UInt64
    /// The integrity check of the block's stream (`lzma_check`).
    var check: UInt32
}

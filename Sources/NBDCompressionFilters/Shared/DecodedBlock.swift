/// The uncompressed bytes of one block, shared read-only by the block cache and the reads that copy
/// from it (a read may copy while another evicts the block from the cache).
final class DecodedBlock: @unchecked Sendable {
    // @unchecked Sendable: `bytes` is written once, before init returns, and only read after.
    /// Where the block starts in the uncompressed file.
    let start: UInt64
    /// The block's bytes.
    let bytes: UnsafeRawBufferPointer

    /// Takes ownership of the first `count` bytes of `buffer`, which this object deallocates.
    init(start: UInt64, owning buffer: UnsafeMutableRawBufferPointer, count: Int) {
        self.start = start
        self.bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<count])
        self.storage = buffer
    }

    private let storage: UnsafeMutableRawBufferPointer

    deinit { storage.deallocate() }

    /// The end of the block in the uncompressed file.
    var end: UInt64 { start + UInt64(bytes.count) }
}

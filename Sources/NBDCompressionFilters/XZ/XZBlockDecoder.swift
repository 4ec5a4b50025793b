import CLZMA
import NBDCore

/// Decodes one xz block, given its compressed bytes (header to check) as the index located them.
enum XZBlockDecoder {
    /// The uncompressed bytes of `block`, whose compressed bytes are `input`.
    ///
    /// - Throws: `NBDError` (`EIO`) when the block header or data is corrupt, or decodes to another
    ///   size than the index says: the client sees a failed read; the file may be damaged in one place.
    static func decode(_ block: CompressedBlock, from input: UnsafeRawBufferPointer) throws(NBDError) -> DecodedBlock {
        let bytes = input.bindMemory(to: UInt8.self)
        guard let base = bytes.baseAddress, bytes.count > 0, bytes[0] != 0 else {
            throw corrupt(block, "no block header")
        }
        var info = lzma_block()
        info.version = 1
        info.check = lzma_check(rawValue: block.check)
        // lzma_block_header_size_decode is a macro: the first byte counts 4-byte units, minus one.
        info.header_size = (UInt32(bytes[0]) + 1) * 4
        guard Int(info.header_size) <= bytes.count else { throw corrupt(block, "the block header is cut short") }
        // LZMA_VLI_UNKNOWN ends the filter chain; liblzma fills the array from the header.
        var filters = [lzma_filter](
            repeating: lzma_filter(id: UInt64.max, options: nil), count: Int(LZMA_FILTERS_MAX) + 1)
        return try filters.withUnsafeMutableBufferPointer {
            (chain: inout UnsafeMutableBufferPointer<lzma_filter>) throws(NBDError) -> DecodedBlock in
            info.filters = chain.baseAddress
            var result = lzma_block_header_decode(&info, nil, base)
            guard result == LZMA_OK else {
                throw corrupt(block, "the block header cannot be read (\(XZIndex.describe(result)))")
            }
            defer { lzma_filters_free(chain.baseAddress, nil) }
            result = lzma_block_compressed_size(&info, block.unpaddedSize)
            guard result == LZMA_OK else {
                throw corrupt(block, "the block header disagrees with the index about the block's size")
            }
            let size = Int(block.uncompressedSize)
            var inputPosition = Int(info.header_size)
            var outputPosition = 0
            let output = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 16)
            result = lzma_block_buffer_decode(
                &info, nil, base, &inputPosition, bytes.count,
                output.bindMemory(to: UInt8.self).baseAddress, &outputPosition, size)
            guard result == LZMA_OK, outputPosition == size else {
                output.deallocate()
                throw corrupt(block, "the block data cannot be decompressed (\(XZIndex.describe(result)))")
            }
            return DecodedBlock(start: block.uncompressedOffset, owning: output, count: size)
        }
    }

    private static func corrupt(_ block: CompressedBlock, _ reason: String) -> NBDError {
        NBDError(.ioError, "xz: the block at compressed offset \(block.compressedOffset) is corrupt: \(reason)")
    }
}

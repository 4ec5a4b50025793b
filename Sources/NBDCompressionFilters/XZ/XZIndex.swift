import CLZMA
import NBDCore

/// Reads the blocks of an xz file from the index at the end of each of its streams.
///
/// Reading walks the file backwards as xz's own `--list` does: stream padding, the stream footer, the
/// index it points to, then the stream header the index's sizes lead to, which must agree with the
/// footer. Every size and offset read from the file is checked against the file's size before it is
/// used, so a truncated or corrupted file is refused with a message instead of being misread.
enum XZIndex {
    static let format = "xz"
    /// An xz stream header (and footer) is 12 bytes.
    static let headerSize: UInt64 = 12
    /// The largest index read into memory. An index holds about 16 bytes per block, so this allows
    /// millions of blocks while refusing a corrupted size field that claims gigabytes.
    static let maximumIndexSize: UInt64 = 256 << 20
    static let magic: [UInt8] = [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]

    /// Reads the index of the xz file that `next` serves.
    ///
    /// - Throws: `NBDError` (`EINVAL`) saying what is wrong: not an xz file, truncated, a corrupted
    ///   footer, index or header, or an unsupported integrity check.
    static func read(from next: some BlockBackend) async throws(NBDError) -> BlockIndex {
        let fileSize = next.capabilities.size
        guard fileSize >= 2 * headerSize else {
            throw NBDError(
                .invalidArgument,
                "xz: not an xz file: it is \(fileSize) bytes, shorter than an xz stream's header and footer (24 bytes)")
        }
        let start = try await LayerBelow.bytes(of: next, at: 0, count: 6, what: "the stream header", format: format)
        guard start == magic else {
            throw NBDError(
                .invalidArgument, "xz: not an xz file: it does not start with the xz magic bytes FD 37 7A 58 5A 00")
        }
        var streams: [[CompressedBlock]] = []
        var end = fileSize
        while end > 0 {
            end = try await skipPadding(next, before: end)
            if end == 0 { break }
            let (blocks, streamStart) = try await readStream(next, endingAt: end)
            streams.append(blocks)
            end = streamStart
        }
        // Streams were read last first.
        return try BlockIndex(streams.reversed().flatMap { $0 }, format: format)
    }

    /// Where the stream padding (zero bytes in groups of four) before `end` begins.
    private static func skipPadding(_ next: some BlockBackend, before end: UInt64) async throws(NBDError) -> UInt64 {
        var end = end
        while end > 0 {
            let chunk = min(end, 64 << 10)
            let bytes = try await LayerBelow.bytes(
                of: next, at: end - chunk, count: chunk, what: "the end of a stream", format: format)
            var zeros = 0
            for byte in bytes.reversed() {
                if byte != 0 { break }
                zeros += 1
            }
            guard zeros == bytes.count else {
                guard zeros % 4 == 0 else {
                    throw NBDError(
                        .invalidArgument,
                        "xz: the file is truncated or corrupt: it does not end with an xz stream footer (\(zeros) stray zero bytes at the end)"
                    )
                }
                return end - UInt64(zeros)
            }
            end -= chunk
            guard chunk % 4 == 0 else { break }
        }
        // Nothing but zeros: no stream at all.
        throw NBDError(.invalidArgument, "xz: not an xz file: no xz stream footer before the zero bytes at its end")
    }

    /// Reads the stream that ends (with its footer) at `end`: its blocks, with file offsets, and
    /// where the stream starts.
    private static func readStream(_ next: some BlockBackend, endingAt end: UInt64) async throws(NBDError)
        -> (blocks: [CompressedBlock], start: UInt64)
    {
        guard end >= 2 * headerSize else {
            throw NBDError(
                .invalidArgument, "xz: the file is truncated or corrupt: \(end) bytes left before a stream footer")
        }
        var footer = lzma_stream_flags()
        let footerBytes = try await LayerBelow.bytes(
            of: next, at: end - headerSize, count: headerSize, what: "the stream footer", format: format)
        let footerResult = footerBytes.withUnsafeBufferPointer { lzma_stream_footer_decode(&footer, $0.baseAddress) }
        guard footerResult == LZMA_OK else {
            throw NBDError(
                .invalidArgument,
                footerResult == LZMA_FORMAT_ERROR
                    ? "xz: the file is truncated or not an xz file: no xz stream footer at offset \(end - headerSize)"
                    : "xz: the file is corrupt: the stream footer at offset \(end - headerSize) fails its check (\(describe(footerResult)))"
            )
        }
        guard lzma_check_is_supported(footer.check) != 0 else {
            throw NBDError(
                .invalidArgument,
                "xz: the file uses integrity check \(footer.check.rawValue), which liblzma does not support")
        }
        let indexSize = footer.backward_size
        guard indexSize <= end - 2 * headerSize else {
            throw NBDError(
                .invalidArgument,
                "xz: the file is truncated or corrupt: the stream footer at offset \(end - headerSize) points to an index of \(indexSize) bytes, larger than what precedes it"
            )
        }
        guard indexSize <= maximumIndexSize else {
            throw NBDError(
                .invalidArgument,
                "xz: the stream index is \(indexSize) bytes, more than the \(maximumIndexSize) this filter reads")
        }
        let indexOffset = end - headerSize - indexSize
        var blocks: [CompressedBlock] = []
        let streamSize = try await LayerBelow.withBytes(
            of: next, at: indexOffset, count: indexSize, what: "the stream index", format: format
        ) { (bytes: UnsafeRawBufferPointer) throws(NBDError) -> UInt64 in
            var index: OpaquePointer? = nil
            var memoryLimit: UInt64 = 1 << 30
            var position = 0
            let result = lzma_index_buffer_decode(
                &index, &memoryLimit, nil, bytes.bindMemory(to: UInt8.self).baseAddress, &position, bytes.count)
            guard result == LZMA_OK, let index else {
                throw NBDError(
                    .invalidArgument,
                    "xz: the file is corrupt: the stream index at offset \(indexOffset) cannot be read (\(describe(result)))"
                )
            }
            defer { lzma_index_end(index, nil) }
            guard position == bytes.count else {
                throw NBDError(
                    .invalidArgument,
                    "xz: the file is corrupt: the stream index at offset \(indexOffset) is shorter than its footer says"
                )
            }
            var iterator = lzma_index_iter()
            lzma_index_iter_init(&iterator, index)
            while lzma_index_iter_next(&iterator, LZMA_INDEX_ITER_BLOCK) == 0 {
                blocks.append(
                    CompressedBlock(
                        uncompressedOffset: 0, uncompressedSize: iterator.block.uncompressed_size,
                        compressedOffset: iterator.block.compressed_stream_offset,
                        totalSize: iterator.block.total_size, unpaddedSize: iterator.block.unpadded_size,
                        check: footer.check.rawValue))
            }
            return lzma_index_stream_size(index)
        }
        guard streamSize >= 2 * headerSize + indexSize, streamSize <= end else {
            throw NBDError(
                .invalidArgument,
                "xz: the file is truncated or corrupt: the stream ending at offset \(end) claims \(streamSize) bytes")
        }
        let streamStart = end - streamSize
        var header = lzma_stream_flags()
        let headerBytes = try await LayerBelow.bytes(
            of: next, at: streamStart, count: headerSize, what: "the stream header", format: format)
        let headerResult = headerBytes.withUnsafeBufferPointer { lzma_stream_header_decode(&header, $0.baseAddress) }
        guard headerResult == LZMA_OK, lzma_stream_flags_compare(&header, &footer) == LZMA_OK else {
            throw NBDError(
                .invalidArgument,
                "xz: the file is truncated or corrupt: no matching xz stream header at offset \(streamStart), where the index of the stream ending at \(end) says it starts"
            )
        }
        for position in blocks.indices {
            // compressed_stream_offset counts from the stream's start (its header included).
            blocks[position].compressedOffset += streamStart
            guard blocks[position].compressedOffset + blocks[position].totalSize <= indexOffset else {
                throw NBDError(
                    .invalidArgument, "xz: the file is corrupt: a block of the index lies outside its stream")
            }
        }
        return (blocks, streamStart)
    }

    /// liblzma's result codes in words.
    static func describe(_ result: lzma_ret) -> String {
        switch result {
        case LZMA_DATA_ERROR: "data error"
        case LZMA_FORMAT_ERROR: "wrong format"
        case LZMA_OPTIONS_ERROR: "unsupported options"
        case LZMA_MEM_ERROR: "out of memory"
        case LZMA_MEMLIMIT_ERROR: "memory limit reached"
        case LZMA_BUF_ERROR: "the data ends too soon"
        case LZMA_UNSUPPORTED_CHECK: "unsupported integrity check"
        case LZMA_PROG_ERROR: "invalid arguments"
        default: "liblzma error \(result.rawValue)"
        }
    }
}

import CLZMA
import NBDCore

/// Decodes one lzip member with liblzma's lzip decoder (liblzma 5.4 and later; nbdkit's lzip filter
/// uses the same decoder), which checks the member's CRC32 and sizes.
enum LzipMemberDecoder {
    /// The uncompressed bytes of `member`, whose compressed bytes are `input`.
    ///
    /// - Throws: `NBDError` (`EIO`) when the member is corrupt or decodes to another size than its
    ///   trailer says.
    static func decode(_ member: CompressedBlock, from input: UnsafeRawBufferPointer) throws(NBDError) -> DecodedBlock {
        var stream = lzma_stream()
        var result = lzma_lzip_decoder(&stream, UInt64.max, 0)
        guard result == LZMA_OK else {
            throw NBDError(.outOfMemory, "lzip: liblzma cannot start an lzip decoder (\(XZIndex.describe(result)))")
        }
        defer { lzma_end(&stream) }
        let size = Int(member.uncompressedSize)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 16)
        stream.next_in = input.bindMemory(to: UInt8.self).baseAddress
        stream.avail_in = input.count
        stream.next_out = output.bindMemory(to: UInt8.self).baseAddress
        stream.avail_out = size
        result = lzma_code(&stream, LZMA_FINISH)
        let produced = size - stream.avail_out
        guard result == LZMA_STREAM_END, produced == size, stream.avail_in == 0 else {
            output.deallocate()
            throw NBDError(
                .ioError,
                "lzip: the member at offset \(member.compressedOffset) is corrupt (\(result == LZMA_STREAM_END ? "its size differs from its trailer's" : XZIndex.describe(result)))"
            )
        }
        return DecodedBlock(start: member.uncompressedOffset, owning: output, count: size)
    }
}

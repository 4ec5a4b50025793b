import Glibc
import NBDCore

/// The whole uncompressed contents of a gzip or bzip2 file, in an unlinked temporary file: those
/// formats can only be read from their start, so, as nbdkit does, the file below is decompressed
/// once and every read is served from the copy.
///
/// The file is created in `TMPDIR` (default `/var/tmp`, like nbdkit: the copy is as large as the
/// image) and unlinked at once, so nothing is left behind however the process ends.
final class DecompressedFile: Sendable {
    /// The directory used when `TMPDIR` is not set.
    static let defaultDirectory = "/var/tmp"
    /// The uncompressed size.
    let size: UInt64
    private let descriptor: Int32

    private init(descriptor: Int32, size: UInt64) {
        self.descriptor = descriptor
        self.size = size
    }

    deinit { close(descriptor) }

    /// Decompresses everything `next` holds with `decoder`, member after member (as `gzip -d` and
    /// `bzip2 -d` read concatenated files), into a new temporary file.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the file does not start with the format's magic bytes,
    ///   is truncated, or is corrupt; or the error of reading below or of writing the copy.
    static func decompress<Decoder: StreamDecoder & ~Copyable>(
        _ next: some BlockBackend, with decoder: consuming Decoder
    ) async throws(NBDError) -> DecompressedFile {
        let format = Decoder.format
        let compressedSize = next.capabilities.size
        let magic = Decoder.magic
        let head = try await LayerBelow.bytes(
            of: next, at: 0, count: min(compressedSize, UInt64(magic.count)), what: "the header", format: format)
        guard head == magic else {
            throw NBDError(
                .invalidArgument,
                "\(format): not a \(format) file: it does not start with the \(format) magic bytes \(magic.map { hex($0) }.joined(separator: " "))"
            )
        }
        let descriptor = try createTemporaryFile(format: format)
        do {
            let size = try await decompress(next, with: decoder, into: descriptor)
            return DecompressedFile(descriptor: descriptor, size: size)
        } catch {
            close(descriptor)
            throw error
        }
    }

    private static func decompress<Decoder: StreamDecoder & ~Copyable>(
        _ next: some BlockBackend, with decoder: consuming Decoder, into descriptor: Int32
    ) async throws(NBDError) -> UInt64 {
        let format = Decoder.format
        let compressedSize = next.capabilities.size
        let magic = Decoder.magic
        let chunk = 1 << 20
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { input.deallocate() }
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { output.deallocate() }
        var readOffset: UInt64 = 0  // how much of the file below has been read into `input`
        var start = 0  // the unused input is input[start..<end]
        var end = 0
        var written: UInt64 = 0
        /// Moves the unused input to the front and reads more after it, up to `input`'s size.
        func refill() async throws(NBDError) {
            if start > 0 {
                input.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[start..<end]))
                end -= start
                start = 0
            }
            let count = Int(min(UInt64(chunk - end), compressedSize - readOffset))
            guard count > 0 else { return }
            try await next.read(
                into: UnsafeMutableRawBufferPointer(rebasing: input[end..<(end + count)]), at: readOffset, flags: [])
            readOffset += UInt64(count)
            end += count
        }
        while true {
            if start == end { try await refill() }
            let (consumed, produced, memberEnded) = try decoder.decode(
                UnsafeRawBufferPointer(rebasing: input[start..<end]), into: output)
            start += consumed
            if produced > 0 {
                try write(
                    UnsafeRawBufferPointer(rebasing: output[0..<produced]), to: descriptor, at: written, format: format)
                written += UInt64(produced)
            }
            if memberEnded {
                // Another member follows if the next bytes are the magic again; anything else after
                // the last member (zero padding, say) is ignored, as gzip -d and bzip2 -d do.
                if end - start < magic.count { try await refill() }
                guard end - start >= magic.count,
                    UnsafeRawBufferPointer(rebasing: input[start..<(start + magic.count)]).elementsEqual(magic)
                else { break }
                try decoder.reset()
                continue
            }
            if consumed == 0 && produced == 0 {
                guard start == end, readOffset == compressedSize else {
                    throw NBDError(
                        .invalidArgument, "\(format): the file is corrupt: decompression stopped making progress")
                }
                throw NBDError(
                    .invalidArgument,
                    "\(format): the file is truncated: it ends in the middle of compressed data (after \(written) uncompressed bytes)"
                )
            }
        }
        return written
    }

    /// Reads `buffer.count` bytes at `offset`, which the caller keeps within ``size``.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, format: String) throws(NBDError) {
        var done = 0
        while done < buffer.count {
            let count = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw NBDError(errno: count < 0 ? errno : EIO, "\(format): cannot read the decompressed copy")
            }
            done += count
        }
    }

    private static func write(_ data: UnsafeRawBufferPointer, to descriptor: Int32, at offset: UInt64, format: String)
        throws(NBDError)
    {
        var done = 0
        while done < data.count {
            let count = pwrite(descriptor, data.baseAddress! + done, data.count - done, off_t(offset) + off_t(done))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw NBDError(
                    errno: count < 0 ? errno : EIO,
                    "\(format): cannot write the decompressed copy in \(temporaryDirectory) (set TMPDIR to a larger filesystem)"
                )
            }
            done += count
        }
    }

    static var temporaryDirectory: String {
        if let value = getenv("TMPDIR"), value.pointee != 0 { return String(cString: value) }
        return defaultDirectory
    }

    private static func createTemporaryFile(format: String) throws(NBDError) -> Int32 {
        let directory = temporaryDirectory
        var template = Array("\(directory)/nbd-\(format)-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else {
            throw NBDError(errno: errno, "\(format): cannot create a temporary file in \(directory) (set TMPDIR)")
        }
        // Unlinked at once: from here on the copy has no name and goes away with the descriptor.
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        return descriptor
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}

import CZlib
import NBDCore

/// zlib's inflate, set up for gzip members.
struct GzipDecoder: ~Copyable, StreamDecoder {
    static var format: String { "gzip" }
    static var magic: [UInt8] { [0x1F, 0x8B] }

    // zlib keeps a pointer back to the z_stream and refuses calls on a copy of it, so the stream
    // lives at a fixed address.
    private let stream: UnsafeMutablePointer<z_stream>

    init() throws(NBDError) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let result = nbd_inflate_init_gzip(stream)
        guard result == Z_OK else {
            stream.deallocate()
            throw NBDError(.outOfMemory, "gzip: zlib cannot start a decompressor (error \(result))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    mutating func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(NBDError) -> (consumed: Int, produced: Int, memberEnded: Bool)
    {
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.pointee.avail_in = uInt(input.count)
        stream.pointee.next_out = output.bindMemory(to: Bytef.self).baseAddress
        stream.pointee.avail_out = uInt(output.count)
        let result = inflate(stream, Z_NO_FLUSH)
        let consumed = input.count - Int(stream.pointee.avail_in)
        let produced = output.count - Int(stream.pointee.avail_out)
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        switch result {
        case Z_OK: return (consumed, produced, false)
        case Z_BUF_ERROR: return (consumed, produced, false)  // no progress possible: the caller decides
        case Z_STREAM_END: return (consumed, produced, true)
        default:
            let reason = stream.pointee.msg.map { String(cString: $0) } ?? "error \(result)"
            throw NBDError(
                .invalidArgument,
                "gzip: the file is corrupt: \(reason) (after \(stream.pointee.total_in) bytes of a member)")
        }
    }

    mutating func reset() throws(NBDError) {
        guard inflateReset(stream) == Z_OK else {
            throw NBDError(.ioError, "gzip: zlib cannot restart the decompressor")
        }
    }
}

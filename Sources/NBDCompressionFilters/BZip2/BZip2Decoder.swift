import CBZip2
import NBDCore

/// libbz2's decompressor.
struct BZip2Decoder: ~Copyable, StreamDecoder {
    static var format: String { "bzip2" }
    static var magic: [UInt8] { Array("BZh".utf8) }

    // libbz2 keeps a pointer back to the bz_stream and refuses calls on a copy of it.
    private let stream: UnsafeMutablePointer<bz_stream>
    private var isOpen: Bool

    init() throws(NBDError) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: bz_stream())
        isOpen = false
        try start()
    }

    deinit {
        if isOpen { BZ2_bzDecompressEnd(stream) }
        stream.deallocate()
    }

    private mutating func start() throws(NBDError) {
        stream.pointee = bz_stream()
        let result = BZ2_bzDecompressInit(stream, 0, 0)
        guard result == BZ_OK else {
            throw NBDError(.outOfMemory, "bzip2: libbz2 cannot start a decompressor (error \(result))")
        }
        isOpen = true
    }

    mutating func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(NBDError) -> (consumed: Int, produced: Int, memberEnded: Bool)
    {
        stream.pointee.next_in = UnsafeMutablePointer(
            mutating: input.bindMemory(to: CChar.self).baseAddress)
        stream.pointee.avail_in = UInt32(input.count)
        stream.pointee.next_out = output.bindMemory(to: CChar.self).baseAddress
        stream.pointee.avail_out = UInt32(output.count)
        let result = BZ2_bzDecompress(stream)
        let consumed = input.count - Int(stream.pointee.avail_in)
        let produced = output.count - Int(stream.pointee.avail_out)
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        switch result {
        case BZ_OK: return (consumed, produced, false)
        case BZ_STREAM_END: return (consumed, produced, true)
        case BZ_DATA_ERROR_MAGIC:
            throw NBDError(
                .invalidArgument, "bzip2: not a bzip2 file: a stream does not start with the magic bytes BZh")
        default:
            throw NBDError(.invalidArgument, "bzip2: the file is corrupt (libbz2 error \(result))")
        }
    }

    mutating func reset() throws(NBDError) {
        if isOpen {
            BZ2_bzDecompressEnd(stream)
            isOpen = false
        }
        try start()
    }
}

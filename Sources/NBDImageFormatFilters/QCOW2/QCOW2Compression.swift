import CZlib
import NBDCore

/// How an image's compressed clusters are compressed: the header's compression type.
package enum QCOW2Compression: Sendable, Hashable {
    /// Raw deflate with a 4 KiB window (type 0, and every version 2 image), through zlib.
    case deflate
    /// A zstd frame (type 1), through libzstd loaded at run time.
    case zstd

    /// Decompresses one cluster: `input` must decode to exactly `output.count` bytes (anything after
    /// the compressed stream, up to the end of its last sector, is padding and ignored).
    ///
    /// - Throws: `NBDError` (`EIO`) when the data does not decompress to a whole cluster; for zstd,
    ///   `ENOTSUP` when libzstd cannot be loaded.
    func decompress(
        _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, hostOffset: UInt64
    ) throws(NBDError) {
        switch self {
        case .deflate: try Self.inflateCluster(input, into: output, hostOffset: hostOffset)
        case .zstd: try Libzstd.shared.get().decompress(input, into: output, hostOffset: hostOffset)
        }
    }

    private static func inflateCluster(
        _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, hostOffset: UInt64
    ) throws(NBDError) {
        guard !input.isEmpty, !output.isEmpty else {
            throw NBDError(.ioError, "qcow2dec: the compressed cluster at offset \(hostOffset) is empty")
        }
        // zlib keeps a pointer back to the z_stream and refuses calls on a copy of it, so the
        // stream lives at a fixed address.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deallocate() }
        // qcow2 compresses with a 4 KiB window (windowBits 12) and no zlib header.
        guard nbd_inflate_init_raw(stream, 12) == Z_OK else {
            throw NBDError(.outOfMemory, "qcow2dec: zlib cannot start a decompressor")
        }
        defer { inflateEnd(stream) }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.pointee.avail_in = uInt(input.count)
        stream.pointee.next_out = output.bindMemory(to: Bytef.self).baseAddress
        stream.pointee.avail_out = uInt(output.count)
        let result = inflate(stream, Z_FINISH)
        // The stream ends with the cluster, or the output is full while padding remains (a buffer
        // error with Z_FINISH): both are a whole cluster.
        guard (result == Z_STREAM_END || result == Z_BUF_ERROR || result == Z_OK), stream.pointee.avail_out == 0 else {
            let reason =
                stream.pointee.msg.map { String(cString: $0) }
                ?? "it ends after \(output.count - Int(stream.pointee.avail_out)) of \(output.count) bytes"
            throw NBDError(
                .ioError,
                "qcow2dec: the image is corrupt: the compressed cluster at offset \(hostOffset) does not inflate: \(reason)"
            )
        }
    }
}

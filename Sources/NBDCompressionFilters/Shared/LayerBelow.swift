import NBDCore

/// Reads of the compressed bytes from the layer below, with the checks every format needs: a range
/// taken from a header or an index must lie within the layer below before it is read.
enum LayerBelow {
    /// Reads `count` bytes at `offset` of `next` and hands them to `body`.
    ///
    /// - Throws: `NBDError` (`EINVAL`) naming `what` when the range runs past the end of the layer
    ///   below (a truncated file, or a header pointing outside it), the layer below's own error, or
    ///   what `body` throws.
    static func withBytes<Result>(
        of next: some BlockBackend, at offset: UInt64, count: UInt64, what: String, format: String,
        _ body: (UnsafeRawBufferPointer) throws(NBDError) -> Result
    ) async throws(NBDError) -> Result {
        let size = next.capabilities.size
        guard offset <= size, count <= size - offset else {
            throw NBDError(
                .invalidArgument,
                "\(format): the file is truncated or corrupt: \(what) (\(count) bytes at offset \(offset)) runs past its end (\(size) bytes)"
            )
        }
        guard count <= 1 << 40 else {
            throw NBDError(.invalidArgument, "\(format): \(what) is too large (\(count) bytes)")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(count), alignment: 16)
        defer { buffer.deallocate() }
        var done = 0
        // At most 32 MiB a request: the NBD limit, for layers below that pass requests on (nbd, curl).
        while done < buffer.count {
            let length = min(buffer.count - done, 32 << 20)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + length)])
            try await next.read(into: slice, at: offset + UInt64(done), flags: [])
            done += length
        }
        return try body(UnsafeRawBufferPointer(buffer))
    }

    /// `count` bytes at `offset` of `next` as an array (for small headers).
    static func bytes(
        of next: some BlockBackend, at offset: UInt64, count: UInt64, what: String, format: String
    ) async throws(NBDError) -> [UInt8] {
        try await withBytes(of: next, at: offset, count: count, what: what, format: format) { Array($0) }
    }
}

extension Capabilities {
    /// What a decompressing filter serves: `size` bytes, read-only, no allocation status (everything
    /// reads as data), cache requests emulated by reading, and multi-conn, since every connection
    /// sees the same unchanging bytes.
    static func decompressed(size: UInt64, below: Capabilities) -> Capabilities {
        var capabilities = below.readOnly
        capabilities.size = size
        capabilities.canExtents = false
        capabilities.cache = .emulated
        capabilities.canMultiConn = true
        capabilities.blockSize = .default
        return capabilities
    }
}

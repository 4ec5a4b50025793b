import NBDCore

/// One connection's view of a qcow2 image as the raw disk it holds: reads and block status decoded
/// through the image's tables, read-only, as nbdkit's qcow2dec filter serves it.
package struct QCOW2DecFilter<Next: BlockBackend>: BlockBackend {
    /// The layer holding the qcow2 file.
    package let next: Next
    /// The opened image, shared with the layer's other connections.
    package let image: QCOW2Image
    package let capabilities: Capabilities

    /// Serves `image`, read from `next`.
    package init(wrapping next: Next, image: QCOW2Image) {
        self.next = next
        self.image = image
        var capabilities = next.capabilities.readOnly
        capabilities.size = image.header.virtualSize
        capabilities.canExtents = true
        capabilities.cache = .emulated
        // Every connection sees the same unchanging bytes.
        capabilities.canMultiConn = true
        capabilities.blockSize = .default
        if image.holdsCompressedClusters {
            // Decompressing a 64 KiB cluster takes about a hundred times as long as copying it: on
            // the server's pool a connection's reads decompress side by side (qemu-img convert
            // decompresses on a thread pool too). Stored clusters stay inline, where a read costs
            // one copy less than a pooled one (the pool's reply is copied into the writer).
            capabilities.slowOperations.formUnion([.read, .cache])
        }
        // Block status reads L2 tables from the layer below, as reads do: as slow as its reads.
        if capabilities.slowOperations.contains(.read) { capabilities.slowOperations.insert(.extents) }
        if capabilities.suspendingOperations.contains(.read) { capabilities.suspendingOperations.insert(.extents) }
        self.capabilities = capabilities
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await image.read(into: buffer, at: offset, from: next)
    }

    package func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw Self.readOnly
    }

    package func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw Self.readOnly
    }

    package func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw Self.readOnly
    }

    package func flush(flags: CommandFlags) async throws(NBDError) {}

    package func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try await image.extents(count: count, at: offset, requestOne: flags.contains(.requestOne), from: next)
    }

    package func close() async {
        await next.close()
    }

    package var exportDescription: String? { next.exportDescription }

    /// Where the layer below holds the bytes, when they lie in stored clusters one after the other
    /// in the file and their tables are cached (``QCOW2Image/hostOffset(ofContiguous:at:)``): then
    /// a read is a plain read of the file, and the server may send it from there.
    package func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? {
        guard let host = image.hostOffset(ofContiguous: count, at: offset) else { return nil }
        return await next.fileRegion(count: count, at: host)
    }

    private static var readOnly: NBDError {
        NBDError(.notPermitted, "qcow2dec: the export is read-only (qcow2dec decodes, it never writes the image)")
    }
}

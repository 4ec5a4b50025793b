import NBDCore

/// nbdkit's xz filter for one connection: serves the uncompressed contents of the xz file below,
/// read-only, decoding whole blocks found through the xz index and keeping the last few decoded.
///
/// A read finds the block holding its first byte by binary search in the index, decodes it (or
/// takes it from the cache), copies what it needs, and goes on to the next block if the read
/// crosses into it. Reading a byte therefore costs decoding at most one block: files made with
/// `xz --block-size=16MiB` (or `xz -T0`, which makes blocks of a few MiB) serve random reads well;
/// a file made by single-threaded `xz` is one block and is decoded whole on the first read.
package struct XZFilter<Next: BlockBackend>: BlockBackend {
    /// The layer below: the compressed file.
    package let next: Next
    package let capabilities: Capabilities
    let index: XZIndex
    let cache: BlockCache

    /// Reads the index of the file below and checks every block against `maximumBlock`.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the file is not an xz file, is truncated or corrupt, or
    ///   has a block larger than `maximumBlock` (nbdkit's `xz-max-block`).
    package init(wrapping next: Next, maximumBlock: UInt64, cacheDepth: Int) async throws(NBDError) {
        let index = try await XZIndex.read(from: next)
        guard index.largestBlock <= maximumBlock else {
            throw NBDError(
                .invalidArgument,
                "xz: the file has a block of \(index.largestBlock) bytes, larger than xz-max-block=\(maximumBlock): raise xz-max-block, or recompress with smaller blocks (xz --block-size=16MiB)"
            )
        }
        self.next = next
        self.index = index
        self.cache = BlockCache(depth: cacheDepth)
        self.capabilities = .decompressed(size: index.size, below: next.capabilities)
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        var done = 0
        while done < buffer.count {
            let position = offset + UInt64(done)
            let block = try await decodedBlock(containing: position)
            let from = Int(position - block.start)
            let count = min(buffer.count - done, block.bytes.count - from)
            UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + count)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: block.bytes[from..<(from + count)]))
            done += count
        }
    }

    /// The decoded block holding `offset`, from the cache or decoded now (and cached).
    func decodedBlock(containing offset: UInt64) async throws(NBDError) -> DecodedBlock {
        if let cached = cache.block(containing: offset) { return cached }
        let block = index.blocks[index.blockIndex(containing: offset)]
        let decoded = try await LayerBelow.withBytes(
            of: next, at: block.compressedOffset, count: block.totalSize, what: "a block", format: XZIndex.format
        ) { (input: UnsafeRawBufferPointer) throws(NBDError) in try XZBlockDecoder.decode(block, from: input) }
        cache.insert(decoded)
        return decoded
    }

    package func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "xz: the export is read-only")
    }

    package func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "xz: the export is read-only")
    }

    package func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "xz: the export is read-only")
    }

    package func flush(flags: CommandFlags) async throws(NBDError) {}

    /// Decodes the blocks of the range into the cache, as far as the cache holds them.
    package func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        var position = offset
        let end = offset + count
        while position < end {
            position = try await decodedBlock(containing: position).end
        }
    }

    package func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.data(count)]
    }

    package func close() async {
        await next.close()
    }
}

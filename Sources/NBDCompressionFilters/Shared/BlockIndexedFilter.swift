import NBDCore

/// nbdkit's xz and lzip filters for one connection: serves the uncompressed contents of the file
/// below, read-only, decoding whole blocks (xz blocks, lzip members) found through the file's index
/// and keeping the last few decoded.
///
/// A read finds the block holding its first byte by binary search in the index, decodes it (or
/// takes it from the cache), copies what it needs, and goes on to the next block if the read
/// crosses into it. Reading a byte therefore costs decoding at most one block: files made with
/// small blocks (`xz --block-size=16MiB`, `xz -T0`, `plzip`) serve random reads well; a file of one
/// block is decoded whole on the first read, and refused when larger than the maximum block.
struct BlockIndexedFilter<Next: BlockBackend>: BlockBackend {
    /// Decodes one block from its compressed bytes.
    typealias Decoder = @Sendable (CompressedBlock, UnsafeRawBufferPointer) throws(NBDError) -> DecodedBlock

    /// The layer below: the compressed file.
    let next: Next
    let capabilities: Capabilities
    let index: BlockIndex
    let cache: BlockCache
    let format: String
    let decode: Decoder

    /// Serves `index`'s blocks of `next`, refusing blocks larger than `maximumBlock`, whose
    /// parameter is `maximumBlockParameter` (for the message).
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the file has a block larger than `maximumBlock`.
    init(
        wrapping next: Next, index: BlockIndex, format: String, maximumBlock: UInt64, maximumBlockParameter: String,
        cacheDepth: Int, decode: @escaping Decoder
    ) throws(NBDError) {
        guard index.largestBlock <= maximumBlock else {
            throw NBDError(
                .invalidArgument,
                "\(format): the file has a block of \(index.largestBlock) uncompressed bytes, larger than \(maximumBlockParameter)=\(maximumBlock): raise \(maximumBlockParameter), or recompress with smaller blocks"
            )
        }
        self.next = next
        self.index = index
        self.format = format
        self.decode = decode
        self.cache = BlockCache(depth: cacheDepth)
        var capabilities = Capabilities.decompressed(size: index.size, below: next.capabilities)
        // Decoding a block takes milliseconds of CPU. As slow operations, reads run on the server's
        // slow-operation pool, so one connection's reads of different blocks decode on every core
        // at once (nbdkit serializes them); cache hits take microseconds, and the server learns to
        // run those inline.
        capabilities.slowOperations.formUnion([.read, .cache])
        self.capabilities = capabilities
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
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
        let block = index.blocks[index.blockIndex(containing: offset)]
        return try await cache.block(block) { () async throws(NBDError) -> DecodedBlock in
            let decode = self.decode
            return try await LayerBelow.withBytes(
                of: next, at: block.compressedOffset, count: block.totalSize, what: "a block", format: format
            ) { (input: UnsafeRawBufferPointer) throws(NBDError) in try decode(block, input) }
        }
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "\(format): the export is read-only")
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "\(format): the export is read-only")
    }

    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "\(format): the export is read-only")
    }

    func flush(flags: CommandFlags) async throws(NBDError) {}

    /// Decodes the blocks of the range into the cache, as far as the cache holds them.
    func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        var position = offset
        let end = offset + count
        while position < end {
            position = try await decodedBlock(containing: position).end
        }
    }

    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.data(count)]
    }

    func close() async {
        await next.close()
    }
}

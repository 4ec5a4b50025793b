import NBDCore

/// nbdkit's blocksize filter for one connection: the layer below only ever sees requests aligned to
/// ``BlockSizeLimits/minimumBlock`` and no larger than ``BlockSizeLimits/maximumData`` (reads and
/// writes) or ``BlockSizeLimits/maximumLength`` (zero, trim, cache, extents), whatever the client sends.
///
/// - Reads are split into pieces of at most `maxdata`; an unaligned head or tail is read as a whole
///   block into a private buffer.
/// - Writes and zeroes are split; an unaligned head or tail is a read-modify-write of its block,
///   holding that block in the export's ``BlockRangeLock`` so no concurrent write to it is lost.
/// - Trims drop their unaligned head and tail (a trim is only a hint) and are split by `maxlen`.
/// - Cache requests are rounded out to whole blocks; extents are asked for whole blocks (in `maxlen`
///   pieces while the layer below answers in full) and cut back to the range the client asked for.
/// - A fast zero that would need splitting or a read-modify-write fails with `ENOTSUP` at once.
///
/// The client sees a minimum block size of 1 (anything is accepted), a preferred size of at least
/// `max(4096, minblock)`, and the export size rounded down to `minblock`.
///
/// ```swift
/// let lock = BlockRangeLock()   // one per export, shared by its connections
/// let export = try MemoryBackendProvider(size: 1 << 30).wrapped { next, _ in
///     try BlockSizeFilter(wrapping: next, minimumBlock: 512, maximumData: 64 << 10, lock: lock)
/// }
/// ```
public struct BlockSizeFilter<Next: BlockBackend>: Filter {
    public let next: Next
    public let capabilities: Capabilities
    /// The limits requests to the layer below obey.
    public let limits: BlockSizeLimits
    /// Serializes read-modify-writes with the other writes to the same blocks, across connections.
    public let lock: BlockRangeLock
    /// Whether the layer below emulates FUA with a flush: then a split request sends its pieces
    /// without FUA and flushes once at the end instead of once per piece.
    @usableFromInline let flushesForFUA: Bool

    /// Wraps `next`; `nil` parameters take nbdkit's defaults (see ``BlockSizeLimits/resolved(minimumBlock:maximumData:maximumLength:below:)``).
    public init(
        wrapping next: Next, minimumBlock: UInt32? = nil, maximumData: UInt32? = nil, maximumLength: UInt32? = nil,
        lock: BlockRangeLock
    ) throws(NBDError) {
        try BlockSizeLimits.validate(minimumBlock: minimumBlock, maximumData: maximumData, maximumLength: maximumLength)
        let below = next.capabilities
        let limits = try BlockSizeLimits.resolved(
            minimumBlock: minimumBlock, maximumData: maximumData, maximumLength: maximumLength, below: below.blockSize)
        self.next = next
        self.limits = limits
        self.lock = lock
        self.flushesForFUA = below.fua == .emulated
        var caps = below
        // The unaligned tail of the export cannot be written safely, so it is not offered (as nbdkit).
        caps.size = below.size / UInt64(limits.minimumBlock) * UInt64(limits.minimumBlock)
        caps.blockSize = BlockSizeConstraints(
            minimum: 1, preferred: max(below.blockSize.preferred, 4096, limits.minimumBlock),
            maximumPayload: UInt32.max)
        self.capabilities = caps
    }

    @inlinable var block: UInt64 { UInt64(limits.minimumBlock) }

    // MARK: Reads

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        var done = 0
        var position = offset
        let drop = Int(position % block)
        if drop != 0 {
            let keep = min(Int(block) - drop, buffer.count)
            try await readPartialBlock(
                at: position - UInt64(drop), range: drop..<(drop + keep), into: buffer, flags: flags)
            done += keep
            position += UInt64(keep)
        }
        while buffer.count - done >= Int(block) {
            let keep = min(Int(limits.maximumData), (buffer.count - done) / Int(block) * Int(block))
            try await next.read(
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + keep)]), at: position, flags: flags)
            done += keep
            position += UInt64(keep)
        }
        if done < buffer.count {
            try await readPartialBlock(
                at: position, range: 0..<(buffer.count - done),
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), flags: flags)
        }
    }

    /// Reads the block at `blockOffset` and copies its bytes `range` to the start of `destination`.
    func readPartialBlock(
        at blockOffset: UInt64, range: Range<Int>, into destination: UnsafeMutableRawBufferPointer, flags: CommandFlags
    ) async throws(NBDError) {
        let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(block), alignment: 64)
        defer { bounce.deallocate() }
        try await next.read(into: bounce, at: blockOffset, flags: flags)
        destination.baseAddress!.copyMemory(from: bounce.baseAddress! + range.lowerBound, byteCount: range.count)
    }

    // MARK: Writes and zeroes

    /// The blocks a write-like request of `count` bytes at `offset` touches: its unaligned head and
    /// tail exclusively (they are read, modified and written back), its aligned body shared.
    func claims(count: UInt64, at offset: UInt64) -> BlockRangeLock.Claims {
        let firstBlock = offset / block
        let endBlock = (offset + count + block - 1) / block
        let headUnaligned = offset % block != 0
        let tailUnaligned = (offset + count) % block != 0
        var bodyFirst = firstBlock
        var bodyEnd = endBlock
        var head: BlockRangeLock.Claim?
        var tail: BlockRangeLock.Claim?
        if headUnaligned {
            head = .init(first: firstBlock, end: firstBlock + 1, isExclusive: true)
            bodyFirst += 1
        }
        if tailUnaligned && !(headUnaligned && endBlock - firstBlock == 1) {
            tail = .init(first: endBlock - 1, end: endBlock, isExclusive: true)
            bodyEnd -= 1
        }
        let body: BlockRangeLock.Claim? =
            bodyFirst < bodyEnd ? .init(first: bodyFirst, end: bodyEnd, isExclusive: false) : nil
        return BlockRangeLock.Claims(head: head, body: body, tail: tail)
    }

    /// The flags for each piece of a write-like request, and whether one flush must follow them all.
    @inlinable
    func pieceFlags(_ flags: CommandFlags) -> (CommandFlags, Bool) {
        if flushesForFUA && flags.contains(.fua) { return (flags.subtracting(.fua), true) }
        return (flags, false)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        // With a minimum block of 1 nothing is ever read back, so there is nothing to lock.
        let ticket = block > 1 ? await lock.acquire(claims(count: UInt64(data.count), at: offset)) : nil
        defer { if let ticket { lock.release(ticket) } }
        let (flags, flushAfter) = pieceFlags(flags)
        var done = 0
        var position = offset
        let drop = Int(position % block)
        if drop != 0 {
            let keep = min(Int(block) - drop, data.count)
            try await rewriteBlock(at: position - UInt64(drop), range: drop..<(drop + keep), flags: flags) { target in
                target.copyMemory(from: UnsafeRawBufferPointer(rebasing: data[0..<keep]))
            }
            done += keep
            position += UInt64(keep)
        }
        while data.count - done >= Int(block) {
            let keep = min(Int(limits.maximumData), (data.count - done) / Int(block) * Int(block))
            try await next.write(
                UnsafeRawBufferPointer(rebasing: data[done..<(done + keep)]), at: position, flags: flags)
            done += keep
            position += UInt64(keep)
        }
        if done < data.count {
            let rest = UnsafeRawBufferPointer(rebasing: data[done...])
            try await rewriteBlock(at: position, range: 0..<rest.count, flags: flags) { target in
                target.copyMemory(from: rest)
            }
        }
        if flushAfter { try await next.flush(flags: []) }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if flags.contains(.fastZero) && ((offset | count) % block != 0 || count > UInt64(limits.maximumLength)) {
            // A fast zero must fail fast rather than be slow; a split or read-modify-write is slow.
            throw NBDError(
                .notSupported, "fast zero of \(count) bytes at \(offset) would need splitting or read-modify-write")
        }
        let ticket = block > 1 ? await lock.acquire(claims(count: count, at: offset)) : nil
        defer { if let ticket { lock.release(ticket) } }
        let (flags, flushAfter) = pieceFlags(flags)
        var remaining = count
        var position = offset
        let drop = position % block
        if drop != 0 {
            let keep = min(block - drop, remaining)
            try await rewriteBlock(
                at: position - drop, range: Int(drop)..<Int(drop + keep), flags: flags.intersection(.fua)
            ) {
                target in target.initializeMemory(as: UInt8.self, repeating: 0)
            }
            remaining -= keep
            position += keep
        }
        while remaining >= block {
            let keep = min(UInt64(limits.maximumLength), remaining / block * block)
            try await next.zero(count: keep, at: position, flags: flags)
            remaining -= keep
            position += keep
        }
        if remaining > 0 {
            try await rewriteBlock(at: position, range: 0..<Int(remaining), flags: flags.intersection(.fua)) { target in
                target.initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
        if flushAfter { try await next.flush(flags: []) }
    }

    /// Read-modify-write of the block at `blockOffset`: reads it, lets `modify` change bytes `range`,
    /// writes it back. The caller holds the block exclusively in ``lock``.
    func rewriteBlock(
        at blockOffset: UInt64, range: Range<Int>, flags: CommandFlags,
        _ modify: (UnsafeMutableRawBufferPointer) -> Void
    ) async throws(NBDError) {
        let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(block), alignment: 64)
        defer { bounce.deallocate() }
        try await next.read(into: bounce, at: blockOffset, flags: [])
        modify(UnsafeMutableRawBufferPointer(rebasing: bounce[range]))
        try await next.write(UnsafeRawBufferPointer(bounce), at: blockOffset, flags: flags)
    }

    // MARK: Requests without data

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        // A trim is a hint: its unaligned head and tail are dropped rather than read-modify-written.
        let start = (offset + block - 1) / block * block
        let end = (offset + count) / block * block
        guard start < end else { return }
        let ticket = block > 1 ? await lock.acquire(claims(count: end - start, at: start)) : nil
        defer { if let ticket { lock.release(ticket) } }
        let (flags, flushAfter) = pieceFlags(flags)
        var position = start
        while position < end {
            let keep = min(UInt64(limits.maximumLength), end - position)
            try await next.trim(count: keep, at: position, flags: flags)
            position += keep
        }
        if flushAfter { try await next.flush(flags: []) }
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        var position = offset / block * block
        let end = min((offset + count + block - 1) / block * block, capabilities.size)
        while position < end {
            let keep = min(UInt64(limits.maximumData), end - position)
            try await next.cache(count: keep, at: position, flags: flags)
            position += keep
        }
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        // Ask for whole blocks from the start of offset's block, then drop what precedes `offset`.
        // maxlen bounds each request below, not the reply: while the layer below answers in full,
        // ask again for the rest, so a run longer than maxlen (4 GiB by default; a request can be
        // longer with extended headers) is still reported as one extent.
        var position = offset / block * block
        var skip = offset - position
        let alignedEnd = min((offset + count + block - 1) / block * block, capabilities.size)
        var result: [Extent] = []
        var covered: UInt64 = 0
        while position < alignedEnd && covered < count {
            let asked = min(alignedEnd - position, UInt64(limits.maximumLength))
            let below = try await next.extents(count: asked, at: position, flags: flags)
            var described: UInt64 = 0
            for var extent in below where covered < count {
                described += extent.length
                if skip >= extent.length {
                    skip -= extent.length
                    continue
                }
                extent.length -= skip
                skip = 0
                extent.length = min(extent.length, count - covered)
                if let last = result.last, last.flags == extent.flags {
                    result[result.count - 1].length += extent.length
                } else {
                    result.append(extent)
                }
                covered += extent.length
            }
            guard described >= asked && !flags.contains(.requestOne) else { break }
            position += described
        }
        guard !result.isEmpty else {
            throw NBDError(.ioError, "the layer below described no extent at offset \(offset)")
        }
        return result
    }
}

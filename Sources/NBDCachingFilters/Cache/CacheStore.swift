import NBDCore
import Synchronization

/// The cache filter's shared state for one export: the cache file, the state of every block
/// (absent, clean or dirty) and the least-recently-used order for reclaiming.
///
/// Every connection of the export uses the same store, as nbdkit's cache is one per server: a
/// flush on any connection writes back every dirty block, whoever wrote it, which is what lets the
/// filter advertise multi-conn in writeback mode.
///
/// ## Locking
/// The block table sits behind one mutex that is held only for lookups and updates, never across
/// I/O. Work on a block (a read-modify-write, a fill from the layer below, a write-back, an
/// eviction) holds that block's asynchronous lock from `BlockLocks`, so requests for different
/// blocks never wait for each other, and the layer below may be awaited while the lock is held.
/// A request holds at most one block lock at a time, and reclaiming only *tries* other blocks'
/// locks, so there is no deadlock.
public final class CacheStore: Sendable {
    package enum State: UInt8, Sendable {
        /// Being filled or written for the first time by the holder of its lock.
        case filling
        /// The same as the layer below.
        case clean
        /// Newer than the layer below: written back on flush.
        case dirty
    }

    struct Entry {
        var state: State
        var lastUse: UInt64
    }

    struct Table {
        var entries: [UInt64: Entry] = [:]
        /// The dirty blocks, so a flush does not scan every cached block.
        var dirty = Set<UInt64>()
        var clock: UInt64 = 0

        mutating func tick() -> UInt64 {
            clock += 1
            return clock
        }
    }

    /// The settings the cache was created with.
    public let configuration: CacheConfiguration
    package let file: TemporaryBlockFile
    /// The size of the export the cache mirrors.
    public let exportSize: UInt64
    let locks = BlockLocks()
    let table = LockedValue(Table())
    /// The most blocks the file may hold, when ``CacheConfiguration/maximumSize`` is set.
    let maximumBlocks: Int?
    let highBlocks: Int
    let lowBlocks: Int

    /// Creates the cache file for an export of `exportSize` bytes, in `configuration.directory`
    /// (or `TMPDIR`, or `/var/tmp`), unlinked at once. Share one store between every connection.
    ///
    /// - Throws: `NBDError` for invalid settings (naming the parameter) or when the file cannot be
    ///   created.
    public init(exportSize: UInt64, configuration: CacheConfiguration) throws(NBDError) {
        try configuration.validate()
        self.configuration = configuration
        self.exportSize = exportSize
        self.file = try TemporaryBlockFile(
            size: exportSize, minimumBlockSize: configuration.minimumBlockSize, directory: configuration.directory,
            purpose: "cache")
        if let maximumSize = configuration.maximumSize {
            let blocks = max(1, Int(maximumSize / UInt64(file.blockSize)))
            maximumBlocks = blocks
            highBlocks = max(1, min(blocks, blocks * configuration.highThreshold / 100))
            lowBlocks = min(highBlocks - 1, blocks * configuration.lowThreshold / 100)
        } else {
            maximumBlocks = nil
            highBlocks = Int.max
            lowBlocks = Int.max
        }
    }

    /// The cache block size in bytes.
    public var blockSize: Int { file.blockSize }

    /// The number of blocks the cache holds now.
    package var cachedBlocks: Int { table.withLock { $0.entries.count } }

    /// The number of dirty blocks.
    package var dirtyBlocks: Int { table.withLock { $0.dirty.count } }

    /// The state of block `block`, or `nil` when it is not cached.
    package func state(of block: UInt64) -> State? {
        table.withLock { $0.entries[block]?.state }
    }

    /// Whether `block` is cached with its data in the file (clean or dirty).
    private func isCached(_ block: UInt64) -> Bool {
        let state = state(of: block)
        return state == .clean || state == .dirty
    }

    /// The state of `block`, marking it as just used.
    private func touch(_ block: UInt64) -> State? {
        table.withLock { table in
            guard table.entries[block] != nil else { return nil }
            let now = table.tick()
            table.entries[block]!.lastUse = now
            return table.entries[block]!.state
        }
    }

    private func setState(_ block: UInt64, _ state: State) {
        table.withLock { table in
            guard table.entries[block] != nil else { return }
            table.entries[block]!.state = state
            if state == .dirty {
                table.dirty.insert(block)
            } else {
                table.dirty.remove(block)
            }
        }
    }

    private func forget(_ block: UInt64) {
        table.withLock { table in
            table.entries.removeValue(forKey: block)
            table.dirty.remove(block)
        }
    }

    /// The bytes of the export in block `block` (the last block may be short).
    private func length(of block: UInt64) -> Int {
        Int(min(UInt64(blockSize), exportSize - block * UInt64(blockSize)))
    }

    private func withBlockBuffer<T>(_ body: (UnsafeMutableRawBufferPointer) async throws(NBDError) -> T)
        async throws(NBDError) -> T
    {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        return try await body(buffer)
    }

    /// Reads block `block` from the layer below into `buffer`, zeroing the part past the export's end.
    private func readBelow<Next: BlockBackend>(_ block: UInt64, into buffer: UnsafeMutableRawBufferPointer, next: Next)
        async throws(NBDError)
    {
        let count = length(of: block)
        try await next.read(
            into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), at: block * UInt64(blockSize), flags: [])
        if count < buffer.count {
            UnsafeMutableRawBufferPointer(rebasing: buffer[count...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    // MARK: - Room in the cache

    /// Adds `block` to the table as ``State/filling``, reclaiming first when the cache is at its high
    /// threshold. Returns `false` when there is no room, in which case the caller must not cache it.
    /// The caller holds `block`'s lock.
    private func admit<Next: BlockBackend>(_ block: UInt64, next: Next) async -> Bool {
        let mustReclaim = table.withLock { table in
            if table.entries.count < highBlocks {
                table.entries[block] = Entry(state: .filling, lastUse: table.tick())
                return false
            }
            return true
        }
        guard mustReclaim, let maximumBlocks else { return true }
        await reclaim(downTo: lowBlocks, next: next)
        return table.withLock { table in
            guard table.entries.count < maximumBlocks else { return false }
            table.entries[block] = Entry(state: .filling, lastUse: table.tick())
            return true
        }
    }

    /// Evicts least recently used blocks until at most `target` remain, writing dirty ones back to
    /// the layer below first (a dirty block is never dropped). Blocks whose lock is taken are left
    /// alone, so this never waits for another request.
    private func reclaim<Next: BlockBackend>(downTo target: Int, next: Next) async {
        let victims: [UInt64] = table.withLock { table in
            let excess = table.entries.count - target
            guard excess > 0 else { return [] }
            return table.entries.filter { $0.value.state != .filling }
                .sorted { $0.value.lastUse < $1.value.lastUse }
                .prefix(excess).map(\.key)
        }
        for victim in victims {
            guard locks.tryAcquire(victim) else { continue }
            defer { locks.release(victim) }
            guard let state = state(of: victim), state != .filling else { continue }
            if state == .dirty {
                do throws(NBDError) {
                    try await withBlockBuffer { buffer throws(NBDError) in
                        try await writeBack(victim, buffer: buffer, next: next)
                    }
                } catch {
                    // Kept, dirty: the next flush reports the failure to a client that can act on it.
                    continue
                }
            }
            forget(victim)
            file.release(block: victim)
        }
    }

    /// Writes dirty block `block` from the file to the layer below. The caller holds its lock.
    private func writeBack<Next: BlockBackend>(_ block: UInt64, buffer: UnsafeMutableRawBufferPointer, next: Next)
        async throws(NBDError)
    {
        let count = length(of: block)
        let data = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
        try file.read(block: block, into: data)
        try await next.write(UnsafeRawBufferPointer(data), at: block * UInt64(blockSize), flags: [])
    }

    // MARK: - Requests

    /// Reads through the cache: cached blocks from the file, the rest from the layer below (and into
    /// the cache when cache-on-read is on).
    package func read<Next: BlockBackend>(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, next: Next)
        async throws(NBDError)
    {
        let onRead = configuration.onRead.isActive
        let size = UInt64(blockSize)
        var done = 0
        while done < buffer.count {
            let position = offset + UInt64(done)
            let block = position / size
            let within = Int(position % size)
            var count = min(blockSize - within, buffer.count - done)
            let current = self.state(of: block)
            if maximumBlocks == nil, current == .clean || current == .dirty {
                // Without a size limit a cached block is never evicted, and it is marked clean or
                // dirty only once its data is in the file: a run of them is one read of the file,
                // without block locks (a write racing with this read overlaps it: undefined in NBD).
                while done + count < buffer.count, isCached((position + UInt64(count)) / size) {
                    count += min(blockSize, buffer.count - done - count)
                }
                try file.read(
                    block: block, from: within,
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count]))
                done += count
                continue
            }
            if !onRead && current == nil {
                // A run of uncached blocks is one read below. No lock is needed: an absent block's
                // newest data is below (an evicted dirty block was written back before it was
                // forgotten), and a write racing with this read overlaps it, which NBD leaves undefined.
                while done + count < buffer.count && state(of: (position + UInt64(count)) / size) == nil {
                    count += min(blockSize, buffer.count - done - count)
                }
                try await next.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count]),
                    at: position, flags: [])
                done += count
                continue
            }
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count])
            await locks.acquire(block)
            defer { locks.release(block) }
            if touch(block) != nil {
                try file.read(block: block, from: within, into: slice)
            } else if onRead {
                try await withBlockBuffer { bounce throws(NBDError) in
                    try await readBelow(block, into: bounce, next: next)
                    slice.copyMemory(from: UnsafeRawBufferPointer(rebasing: bounce[within..<within + count]))
                    // The client has its data; failing to keep a copy (a full disk) costs only speed.
                    if await admit(block, next: next) {
                        do throws(NBDError) {
                            try file.write(block: block, UnsafeRawBufferPointer(bounce))
                            setState(block, .clean)
                        } catch {
                            forget(block)
                        }
                    }
                }
            } else {
                try await next.read(into: slice, at: position, flags: [])
            }
            done += count
        }
    }

    /// Writes `data` (or zeroes, when `nil`) of `count` bytes at `offset`, as the mode says.
    ///
    /// - Parameter fuaBelow: whether a write sent down because of FUA carries the FUA flag (the layer
    ///   below has native FUA); otherwise the caller flushes after.
    package func write<Next: BlockBackend>(
        _ data: UnsafeRawBufferPointer?, count total: Int, at offset: UInt64, fua: Bool, fuaBelow: Bool, next: Next
    ) async throws(NBDError) {
        let size = UInt64(blockSize)
        let through = configuration.mode == .writethrough || (fua && configuration.mode == .writeback)
        let zeroes = data == nil ? UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096) : nil
        zeroes?.initializeMemory(as: UInt8.self, repeating: 0)
        defer { zeroes?.deallocate() }
        var done = 0
        while done < total {
            let position = offset + UInt64(done)
            let block = position / size
            let within = Int(position % size)
            let count = min(blockSize - within, total - done)
            if within == 0, !through, maximumBlocks == nil, let data {
                let run = min((total - done) / blockSize, locks.stripeCount)
                if run >= 2 {
                    let bytes = run * blockSize
                    try await storeWholeBlocks(
                        block..<block + UInt64(run), UnsafeRawBufferPointer(rebasing: data[done..<done + bytes]))
                    done += bytes
                    continue
                }
            }
            let source =
                data.map { UnsafeRawBufferPointer(rebasing: $0[done..<done + count]) }
                ?? UnsafeRawBufferPointer(rebasing: zeroes![0..<count])
            await locks.acquire(block)
            defer { locks.release(block) }
            // Every written block is kept in the cache, also when the write goes through (as nbdkit
            // does): other connections then read the new data from the cache rather than from a
            // layer below that may keep stale data per connection.
            var cached = touch(block) != nil
            if cached {
                try file.write(block: block, at: within, source)
            } else if await admit(block, next: next) {
                do throws(NBDError) {
                    if count == length(of: block) {
                        try file.write(block: block, source)
                    } else {
                        try await withBlockBuffer { bounce throws(NBDError) in
                            try await readBelow(block, into: bounce, next: next)
                            UnsafeMutableRawBufferPointer(rebasing: bounce[within..<within + count]).copyMemory(
                                from: source)
                            try file.write(block: block, UnsafeRawBufferPointer(bounce))
                        }
                    }
                } catch {
                    forget(block)
                    file.release(block: block)
                    throw error
                }
                cached = true
                if !through { setState(block, .dirty) }
            }
            if through || !cached {
                // Through to the layer below: writethrough, a FUA write in writeback, or no room in the
                // cache even after reclaiming (so it never grows past its maximum, and nothing is lost).
                // The layer below gets exactly the client's bytes.
                do throws(NBDError) {
                    try await next.write(source, at: position, flags: fua && fuaBelow && through ? .fua : [])
                } catch {
                    // The cached copy already has the new bytes: let a later flush retry them.
                    if cached { setState(block, .dirty) }
                    throw error
                }
                if cached && state(of: block) == .filling { setState(block, .clean) }
            } else {
                setState(block, .dirty)
            }
            done += count
        }
    }

    /// Stores a run of whole blocks that stay in the cache as dirty blocks (writeback or unsafe
    /// mode, no size limit, so admitting them never reclaims) with one `pwrite` straight from the
    /// client's payload, under the locks of every block of the run: the blocks the per-block path
    /// would store one call each (issue #25). On a failed write, blocks that were not cached before
    /// are forgotten again; cached ones keep their state, as on the per-block path.
    private func storeWholeBlocks(_ blocks: Range<UInt64>, _ data: UnsafeRawBufferPointer) async throws(NBDError) {
        await locks.acquire(blocks)
        defer { locks.release(blocks) }
        let added = table.withLock { table -> [UInt64] in
            var added: [UInt64] = []
            for block in blocks {
                let now = table.tick()
                if table.entries[block] == nil {
                    table.entries[block] = Entry(state: .filling, lastUse: now)
                    added.append(block)
                } else {
                    table.entries[block]!.lastUse = now
                }
            }
            return added
        }
        do {
            try file.write(block: blocks.lowerBound, data)
        } catch {
            for block in added {
                forget(block)
                file.release(block: block)
            }
            throw error
        }
        table.withLock { table in
            for block in blocks {
                table.entries[block]?.state = .dirty
                table.dirty.insert(block)
            }
        }
    }

    /// Writes every dirty block back to the layer below through `next`, then flushes it. A block
    /// that fails stays dirty; the others are still written, and the first error is thrown.
    package func flush<Next: BlockBackend>(next: Next) async throws(NBDError) {
        let dirty: [UInt64] = table.withLock { $0.dirty.sorted() }
        var firstError: NBDError?
        if !dirty.isEmpty {
            await withBlockBufferIgnoringErrors { buffer in
                for block in dirty {
                    await locks.acquire(block)
                    defer { locks.release(block) }
                    guard state(of: block) == .dirty else { continue }
                    do throws(NBDError) {
                        try await writeBack(block, buffer: buffer, next: next)
                        setState(block, .clean)
                    } catch {
                        if firstError == nil {
                            firstError = NBDError(
                                error.code, "cache: writing back block \(block) failed: \(error.message)")
                        }
                    }
                }
            }
        }
        if next.capabilities.canFlush {
            do { try await next.flush(flags: []) } catch { if firstError == nil { firstError = error } }
        }
        if let firstError { throw firstError }
    }

    private func withBlockBufferIgnoringErrors(_ body: (UnsafeMutableRawBufferPointer) async -> Void) async {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
        defer { buffer.deallocate() }
        await body(buffer)
    }

    /// Fills the cache with the blocks that overlap the range (nbdkit's cache always fills on a cache
    /// request, whatever cache-on-read says).
    package func prefetch<Next: BlockBackend>(count: UInt64, at offset: UInt64, next: Next) async throws(NBDError) {
        guard count > 0 else { return }
        let size = UInt64(blockSize)
        for block in (offset / size)...((offset + count - 1) / size) {
            await locks.acquire(block)
            defer { locks.release(block) }
            guard touch(block) == nil else { continue }
            try await withBlockBuffer { bounce throws(NBDError) in
                try await readBelow(block, into: bounce, next: next)
                guard await admit(block, next: next) else { return }
                do throws(NBDError) {
                    try file.write(block: block, UnsafeRawBufferPointer(bounce))
                } catch {
                    forget(block)
                    throw error
                }
                setState(block, .clean)
            }
        }
    }

    /// The dirty blocks overlapping the range, as block-status overrides: their data is only here.
    package func dirtyOverrides(count: UInt64, at offset: UInt64) -> [ExtentOverlay.Override] {
        guard count > 0 else { return [] }
        let size = UInt64(blockSize)
        let first = offset / size, last = (offset + count - 1) / size
        let blocks: [UInt64] = table.withLock { table in
            if UInt64(table.dirty.count) < last - first + 1 {
                return table.dirty.filter { $0 >= first && $0 <= last }.sorted()
            }
            return (first...last).filter { table.dirty.contains($0) }
        }
        return blocks.map { ExtentOverlay.Override($0 * size..<min(exportSize, ($0 + 1) * size), []) }
    }
}

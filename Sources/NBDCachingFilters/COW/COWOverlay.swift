import NBDCore
import Synchronization

/// The cow filter's shared state for one export: the overlay file and which blocks it holds.
///
/// Every connection of the export sees the same overlay, as in nbdkit (unlike `nbd-server -c`,
/// where each connection has its own). Blocks are *absent* (read from the layer below),
/// *allocated* (read from the overlay) or *trimmed* (read as zeroes, reported as a hole).
///
/// Locking is the cache's: one mutex for the table, held only for lookups, and an asynchronous
/// lock per block (`BlockLocks`) for read-modify-writes and copies from below.
public final class COWOverlay: Sendable {
    package enum State: UInt8, Sendable {
        /// The overlay holds the block's data.
        case allocated
        /// The block reads as zeroes; the overlay holds no data for it.
        case trimmed
    }

    /// The settings the overlay was created with.
    public let configuration: COWConfiguration
    package let file: TemporaryBlockFile
    /// The size of the export the overlay covers.
    public let exportSize: UInt64
    let locks = BlockLocks()
    let table = LockedValue<[UInt64: State]>([:])

    /// Creates the overlay file for an export of `exportSize` bytes, in `configuration.directory`
    /// (or `TMPDIR`, or `/var/tmp`), unlinked at once. Share one overlay between every connection.
    public init(exportSize: UInt64, configuration: COWConfiguration) throws(NBDError) {
        try configuration.validate()
        self.configuration = configuration
        self.exportSize = exportSize
        // cow-block-size, or the filesystem's block size when larger, so releasing a block frees it.
        self.file = try TemporaryBlockFile(
            size: exportSize, minimumBlockSize: configuration.blockSize, directory: configuration.directory,
            purpose: "cow")
    }

    /// The overlay block size in bytes.
    public var blockSize: Int { file.blockSize }

    /// The state of block `block`, or `nil` when the layer below has it.
    package func state(of block: UInt64) -> State? {
        table.withLock { $0[block] }
    }

    /// The number of blocks the overlay holds (allocated or trimmed).
    package var presentBlocks: Int { table.withLock { $0.count } }

    private func setState(_ block: UInt64, _ state: State?) {
        table.withLock { $0[block] = state }
    }

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

    /// Fills `buffer` with block `block` as the client sees it now. The caller holds the block's lock.
    private func current<Next: BlockBackend>(_ block: UInt64, into buffer: UnsafeMutableRawBufferPointer, next: Next)
        async throws(NBDError)
    {
        switch state(of: block) {
        case .allocated:
            try file.read(block: block, into: buffer)
        case .trimmed:
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
        case nil:
            let count = length(of: block)
            try await next.read(
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), at: block * UInt64(blockSize),
                flags: [])
            if count < buffer.count {
                UnsafeMutableRawBufferPointer(rebasing: buffer[count...]).initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
    }

    // MARK: - Requests

    /// Reads through the overlay: overlay blocks from the file, trimmed blocks as zeroes, the rest
    /// from the layer below (and into the overlay when cow-on-read is on).
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
            let found = state(of: block)
            if found == .allocated {
                // A block is marked allocated only once its data is in the file, and never leaves
                // the overlay: a run of them is one read of the file, without block locks.
                while done + count < buffer.count && state(of: (position + UInt64(count)) / size) == .allocated {
                    count += min(blockSize, buffer.count - done - count)
                }
                try file.read(
                    block: block, from: within,
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count]))
                done += count
                continue
            }
            if !onRead && found == nil {
                // A run of blocks the overlay does not have is one read below; the layer below never
                // changes, so no lock is needed.
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
            switch state(of: block) {
            case .allocated:
                try file.read(block: block, from: within, into: slice)
            case .trimmed:
                slice.initializeMemory(as: UInt8.self, repeating: 0)
            case nil:
                try await withBlockBuffer { bounce throws(NBDError) in
                    try await current(block, into: bounce, next: next)
                    slice.copyMemory(from: UnsafeRawBufferPointer(rebasing: bounce[within..<within + count]))
                    // cow-on-read: keep the copy. A full disk costs only speed here.
                    do throws(NBDError) {
                        try file.write(block: block, UnsafeRawBufferPointer(bounce))
                        setState(block, .allocated)
                    } catch {
                        file.release(block: block)
                    }
                }
            }
            done += count
        }
    }

    /// Writes `data` (or zeroes, when `nil`) of `count` bytes at `offset` into the overlay. Whole
    /// blocks of zeroes become trimmed blocks when `mayTrim`.
    package func write<Next: BlockBackend>(
        _ data: UnsafeRawBufferPointer?, count total: Int, at offset: UInt64, mayTrim: Bool, next: Next
    ) async throws(NBDError) {
        let size = UInt64(blockSize)
        var done = 0
        while done < total {
            let position = offset + UInt64(done)
            let block = position / size
            let within = Int(position % size)
            let count = min(blockSize - within, total - done)
            if within == 0, let data {
                let run = min((total - done) / blockSize, locks.stripeCount)
                if run >= 2 {
                    let bytes = run * blockSize
                    try await writeWholeBlocks(
                        block..<block + UInt64(run), UnsafeRawBufferPointer(rebasing: data[done..<done + bytes]))
                    done += bytes
                    continue
                }
            }
            await locks.acquire(block)
            defer { locks.release(block) }
            let whole = within == 0 && count == length(of: block)
            if data == nil && whole && mayTrim {
                setState(block, .trimmed)
                file.release(block: block)
            } else if whole, let data {
                try file.write(block: block, UnsafeRawBufferPointer(rebasing: data[done..<done + count]))
                setState(block, .allocated)
            } else if whole {
                // A whole block of zeroes that must stay allocated (NO_HOLE): nothing to copy from
                // below, and nothing to write either where the file can punch the block out (a zero
                // request may cover gigabytes).
                try file.zero(block: block)
                setState(block, .allocated)
            } else if state(of: block) == .allocated {
                if let data {
                    try file.write(
                        block: block, at: within, UnsafeRawBufferPointer(rebasing: data[done..<done + count]))
                } else {
                    try withZeroes(count) { zeroes throws(NBDError) in try file.write(block: block, at: within, zeroes)
                    }
                }
            } else {
                try await withBlockBuffer { bounce throws(NBDError) in
                    try await current(block, into: bounce, next: next)
                    let target = UnsafeMutableRawBufferPointer(rebasing: bounce[within..<within + count])
                    if let data {
                        target.copyMemory(from: UnsafeRawBufferPointer(rebasing: data[done..<done + count]))
                    } else {
                        target.initializeMemory(as: UInt8.self, repeating: 0)
                    }
                    do throws(NBDError) {
                        try file.write(block: block, UnsafeRawBufferPointer(bounce))
                    } catch {
                        // Keep the block as it was: if it was absent, its space is given back.
                        if state(of: block) == nil { file.release(block: block) }
                        throw error
                    }
                }
                setState(block, .allocated)
            }
            done += count
        }
    }

    /// Writes a run of whole blocks with one `pwrite` straight from the client's payload (issue
    /// #25: one call per 64 KiB block cost about a third more kernel time than one per 1 MiB), under
    /// the locks of every block of the run, then marks them allocated in one table update.
    private func writeWholeBlocks(_ blocks: Range<UInt64>, _ data: UnsafeRawBufferPointer) async throws(NBDError) {
        await locks.acquire(blocks)
        defer { locks.release(blocks) }
        try file.write(block: blocks.lowerBound, data)
        table.withLock { table in
            for block in blocks { table[block] = .allocated }
        }
    }

    private func withZeroes(_ count: Int, _ body: (UnsafeRawBufferPointer) throws(NBDError) -> Void) throws(NBDError) {
        let zeroes = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
        try body(UnsafeRawBufferPointer(zeroes))
    }

    /// Copies the blocks overlapping the range into the overlay (cow-on-cache).
    package func copyIn<Next: BlockBackend>(count: UInt64, at offset: UInt64, next: Next) async throws(NBDError) {
        guard count > 0 else { return }
        let size = UInt64(blockSize)
        for block in (offset / size)...((offset + count - 1) / size) {
            await locks.acquire(block)
            defer { locks.release(block) }
            guard state(of: block) == nil else { continue }
            try await withBlockBuffer { bounce throws(NBDError) in
                try await current(block, into: bounce, next: next)
                try file.write(block: block, UnsafeRawBufferPointer(bounce))
                setState(block, .allocated)
            }
        }
    }

    /// The overlay's blocks overlapping the range, as block-status overrides: allocated blocks are
    /// data, trimmed blocks holes that read as zeroes.
    package func overrides(count: UInt64, at offset: UInt64) -> [ExtentOverlay.Override] {
        guard count > 0 else { return [] }
        let size = UInt64(blockSize)
        let first = offset / size, last = (offset + count - 1) / size
        let present: [(UInt64, State)] = table.withLock { table in
            if UInt64(table.count) < last - first + 1 {
                return table.filter { $0.key >= first && $0.key <= last }.sorted { $0.key < $1.key }.map {
                    ($0.key, $0.value)
                }
            }
            return (first...last).compactMap { block in table[block].map { (block, $0) } }
        }
        var result: [ExtentOverlay.Override] = []
        for (block, state) in present {
            let flags: Extent.Flags = state == .trimmed ? [.hole, .zero] : []
            let range = block * size..<min(exportSize, (block + 1) * size)
            if let last = result.last, last.range.upperBound == range.lowerBound, last.flags == flags {
                result[result.count - 1].range = last.range.lowerBound..<range.upperBound
            } else {
                result.append(ExtentOverlay.Override(range, flags))
            }
        }
        return result
    }
}

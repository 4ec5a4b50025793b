import Glibc
import NBDCore
import Synchronization

/// The bytes of one memory export, shared by every connection: a sparse array of 64 KiB pages.
///
/// ## Page table
/// Pages are found through a radix tree of tables with 1024 atomic slots each (8 KiB). The tree is
/// just deep enough for the export: 2 levels for 1 GiB, 5 for 2^63 - 1 bytes. A slot holds the address
/// of the next table or, in a leaf table, of a page; 0 means "not allocated", so memory grows with
/// what was written and not with the export size. A missing table or page is installed with a
/// compare-and-swap; the loser of a race frees its copy, which nobody else ever saw. Lookups are
/// plain acquire loads and take no lock.
///
/// Tables are never freed before the store is, so a lookup can always walk them. Pages are freed
/// when a zero or trim covers them whole; ``StripedPageLocks`` makes that safe against requests still
/// copying to or from the page (see there). The bytes themselves are copied without a lock: requests
/// that overlap and run at the same time have no defined order in the NBD protocol, and a client that
/// needs one waits for the first reply.
@usableFromInline
final class MemoryStore: @unchecked Sendable {
    // @unchecked: the raw table and page pointers are only reached through atomic slots and the
    // striped locks described above.

    /// log2 of the page size.
    static let pageShift: UInt64 = 16
    /// The size of one page: 64 KiB, nbdkit's sparse array page size.
    static let pageSize = 1 << 16
    static let pageMask = UInt64(pageSize - 1)
    /// log2 of the number of slots in one table.
    static let levelBits = 10
    static let fanout = 1 << levelBits
    static let slotMask = UInt64(fanout - 1)
    /// The bytes one table takes.
    static let tableBytes = fanout * MemoryLayout<UInt>.stride
    /// The most extents one block status reply describes; the client asks again for the rest.
    static let maximumExtents = 4096

    /// The export size in bytes.
    let size: UInt64
    /// The number of table levels, ≥ 1.
    let depth: Int
    private let root: UnsafeMutablePointer<Atomic<UInt>>
    private let locks = StripedPageLocks()
    private let pages = Atomic<Int>(0)
    private let tables = Atomic<Int>(1)

    /// Creates an empty store. `size` must be at most `Int64.max`; the provider checks it.
    init(size: UInt64) {
        self.size = size
        let pageCount = size == 0 ? 0 : (size - 1) >> Self.pageShift + 1
        let indexBits = pageCount <= 1 ? 0 : UInt64.bitWidth - (pageCount - 1).leadingZeroBitCount
        depth = max(1, (indexBits + Self.levelBits - 1) / Self.levelBits)
        // The root is the one table allocated up front; failing here is failing to start.
        guard let root = Self.makeTable() else { fatalError("cannot allocate the memory backend's page table") }
        self.root = root
    }

    deinit {
        Self.release(table: root, level: depth - 1)
    }

    /// The number of pages that hold data.
    var allocatedPageCount: Int { pages.load(ordering: .relaxed) }

    /// The memory the store holds: its pages plus its page tables.
    var allocatedBytes: Int {
        allocatedPageCount * Self.pageSize + tables.load(ordering: .relaxed) * Self.tableBytes
    }

    // MARK: - Data path

    /// Copies `buffer.count` bytes at `offset` into `buffer`; unallocated pages read as zeroes.
    @usableFromInline
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        var position = offset
        while done < buffer.count {
            let page = position >> Self.pageShift
            let within = Int(position & Self.pageMask)
            let length = min(Self.pageSize - within, buffer.count - done)
            let target = base + done
            // Holes need no lock: if a writer installs the page meanwhile, the two requests overlap
            // and either order is a valid outcome. (memset rather than initializeMemory(repeating:),
            // which is a byte loop in unoptimized builds.)
            if let slot = slot(for: page), slot.pointee.load(ordering: .relaxed) != 0 {
                let lock = locks.stripe(for: page)
                locks.lockShared(lock)
                if let data = UnsafeRawPointer(bitPattern: slot.pointee.load(ordering: .acquiring)) {
                    target.copyMemory(from: data + within, byteCount: length)
                } else {
                    memset(target, 0, length)
                }
                locks.unlockShared(lock)
            } else {
                memset(target, 0, length)
            }
            done += length
            position += UInt64(length)
        }
    }

    /// Copies `data` to `offset`, allocating the pages it touches.
    @usableFromInline
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws(NBDError) {
        guard let base = data.baseAddress else { return }
        var done = 0
        var position = offset
        while done < data.count {
            let page = position >> Self.pageShift
            let within = Int(position & Self.pageMask)
            let length = min(Self.pageSize - within, data.count - done)
            let target = try pageForWriting(page)
            (target.page + within).copyMemory(from: base + done, byteCount: length)
            locks.unlockShared(target.lock)
            done += length
            position += UInt64(length)
        }
    }

    /// Makes `count` bytes at `offset` read as zeroes: pages covered whole are freed, the zeroed part
    /// of others is cleared in place, and holes stay holes.
    func zero(count: UInt64, at offset: UInt64) {
        guard count > 0 else { return }
        let end = offset + count
        let firstWhole = (offset + Self.pageMask) >> Self.pageShift
        let endWhole = end >> Self.pageShift
        if firstWhole >= endWhole {
            // No whole page: one or two partial pages.
            clearPartial(from: offset, to: end)
            return
        }
        clearPartial(from: offset, to: firstWhole << Self.pageShift)
        var page = firstWhole
        while let allocated = nextAllocatedPage(from: page, below: endWhole) {
            freePage(allocated)
            page = allocated + 1
        }
        clearPartial(from: endWhole << Self.pageShift, to: end)
    }

    /// Describes the allocation of `count` bytes at `offset` as alternating runs of data and holes.
    func extents(count: UInt64, at offset: UInt64, one: Bool) -> [Extent] {
        let end = min(offset + count, size)
        guard offset < end else { return [] }
        let lastPage = (end - 1) >> Self.pageShift
        var result: [Extent] = []
        var position = offset
        while position < end && result.count < Self.maximumExtents {
            let page = position >> Self.pageShift
            let allocated = isAllocated(page)
            // Runs alternate, so each new extent differs from the previous one: merging is built in.
            let runEndPage =
                allocated
                ? nextHolePage(from: page + 1, below: lastPage + 1)
                : (nextAllocatedPage(from: page + 1, below: lastPage + 1) ?? lastPage + 1)
            let runEnd = min(runEndPage << Self.pageShift, end)
            result.append(allocated ? .data(runEnd - position) : .hole(runEnd - position))
            position = runEnd
            if one { break }
        }
        return result
    }

    // MARK: - Pages

    /// Returns the page at `page` with its stripe held shared, allocating the page (and the tables on
    /// the way) if needed. The caller copies and then releases the stripe.
    @inline(__always)
    private func pageForWriting(_ page: UInt64) throws(NBDError) -> (
        page: UnsafeMutableRawPointer, lock: UnsafeMutablePointer<Atomic<Int>>
    ) {
        let slot = try slotCreatingTables(for: page)
        let lock = locks.stripe(for: page)
        var spare: UnsafeMutableRawPointer? = nil
        defer { if let spare { free(spare) } }
        while true {
            // Allocate outside the lock so that a free waiting for this stripe does not wait for malloc.
            if spare == nil && slot.pointee.load(ordering: .relaxed) == 0 {
                spare = try Self.makePage()
            }
            locks.lockShared(lock)
            if let existing = UnsafeMutableRawPointer(bitPattern: slot.pointee.load(ordering: .acquiring)) {
                return (existing, lock)
            }
            if let fresh = spare {
                let (installed, winner) = slot.pointee.compareExchange(
                    expected: 0, desired: UInt(bitPattern: fresh), ordering: .acquiringAndReleasing)
                if installed {
                    spare = nil
                    pages.wrappingAdd(1, ordering: .relaxed)
                    return (fresh, lock)
                }
                return (UnsafeMutableRawPointer(bitPattern: winner)!, lock)
            }
            // The page was freed between the check and the lock: allocate and try again.
            locks.unlockShared(lock)
        }
    }

    /// Clears `[from, to)`, which lies within one page, in place if that page is allocated.
    private func clearPartial(from start: UInt64, to end: UInt64) {
        guard start < end else { return }
        let page = start >> Self.pageShift
        guard let slot = slot(for: page), slot.pointee.load(ordering: .relaxed) != 0 else { return }
        let lock = locks.stripe(for: page)
        locks.lockShared(lock)
        if let data = UnsafeMutableRawPointer(bitPattern: slot.pointee.load(ordering: .acquiring)) {
            memset(data + Int(start & Self.pageMask), 0, Int(end - start))
        }
        locks.unlockShared(lock)
    }

    /// Takes `page` out of the table and frees it once no request is copying to or from it.
    private func freePage(_ page: UInt64) {
        guard let slot = slot(for: page), slot.pointee.load(ordering: .relaxed) != 0 else { return }
        let lock = locks.stripe(for: page)
        locks.lockExclusive(lock)
        let old = slot.pointee.exchange(0, ordering: .acquiringAndReleasing)
        locks.unlockExclusive(lock)
        if let data = UnsafeMutableRawPointer(bitPattern: old) {
            free(data)
            pages.wrappingSubtract(1, ordering: .relaxed)
        }
    }

    private func isAllocated(_ page: UInt64) -> Bool {
        guard let slot = slot(for: page) else { return false }
        return slot.pointee.load(ordering: .relaxed) != 0
    }

    // MARK: - Table walks

    /// The leaf slot of `page`, or `nil` when a table on the way was never needed.
    @inline(__always)
    private func slot(for page: UInt64) -> UnsafeMutablePointer<Atomic<UInt>>? {
        var table = root
        var shift = (depth - 1) * Self.levelBits
        while shift > 0 {
            let entry = table[Self.index(page, shift)].load(ordering: .acquiring)
            guard let next = UnsafeMutablePointer<Atomic<UInt>>(bitPattern: entry) else { return nil }
            table = next
            shift -= Self.levelBits
        }
        return table + Self.index(page, 0)
    }

    /// The leaf slot of `page`, installing missing tables on the way.
    @inline(__always)
    private func slotCreatingTables(for page: UInt64) throws(NBDError) -> UnsafeMutablePointer<Atomic<UInt>> {
        var table = root
        var shift = (depth - 1) * Self.levelBits
        while shift > 0 {
            let slot = table + Self.index(page, shift)
            var entry = slot.pointee.load(ordering: .acquiring)
            if entry == 0 {
                guard let fresh = Self.makeTable() else {
                    throw NBDError(.noSpace, "out of memory for the memory backend's page table")
                }
                let (installed, winner) = slot.pointee.compareExchange(
                    expected: 0, desired: UInt(bitPattern: fresh), ordering: .acquiringAndReleasing)
                if installed {
                    entry = UInt(bitPattern: fresh)
                    tables.wrappingAdd(1, ordering: .relaxed)
                } else {
                    Self.freeTable(fresh)
                    entry = winner
                }
            }
            table = UnsafeMutablePointer(bitPattern: entry)!
            shift -= Self.levelBits
        }
        return table + Self.index(page, 0)
    }

    /// The first allocated page in `[start, limit)`, skipping whole subtrees that were never
    /// allocated, so that scanning a huge empty export costs a few table reads.
    private func nextAllocatedPage(from start: UInt64, below limit: UInt64) -> UInt64? {
        var page = start
        descend: while page < limit {
            var table = root
            var shift = (depth - 1) * Self.levelBits
            while shift > 0 {
                let entry = table[Self.index(page, shift)].load(ordering: .acquiring)
                guard let next = UnsafeMutablePointer<Atomic<UInt>>(bitPattern: entry) else {
                    page = Self.nextSubtree(after: page, shift: shift)
                    continue descend
                }
                table = next
                shift -= Self.levelBits
            }
            // Scan the rest of this leaf table.
            var index = Self.index(page, 0)
            while index < Self.fanout && page < limit {
                if table[index].load(ordering: .relaxed) != 0 { return page }
                index += 1
                page += 1
            }
        }
        return nil
    }

    /// The first unallocated page in `[start, limit)`, or `limit` if every page there is allocated.
    private func nextHolePage(from start: UInt64, below limit: UInt64) -> UInt64 {
        var page = start
        descend: while page < limit {
            var table = root
            var shift = (depth - 1) * Self.levelBits
            while shift > 0 {
                let entry = table[Self.index(page, shift)].load(ordering: .acquiring)
                guard let next = UnsafeMutablePointer<Atomic<UInt>>(bitPattern: entry) else { return page }
                table = next
                shift -= Self.levelBits
            }
            var index = Self.index(page, 0)
            while index < Self.fanout && page < limit {
                if table[index].load(ordering: .relaxed) == 0 { return page }
                index += 1
                page += 1
            }
        }
        return limit
    }

    @inline(__always)
    private static func index(_ page: UInt64, _ shift: Int) -> Int {
        Int(truncatingIfNeeded: (page >> UInt64(shift)) & slotMask)
    }

    /// The first page of the subtree after the one at `shift` that contains `page`.
    private static func nextSubtree(after page: UInt64, shift: Int) -> UInt64 {
        let span = UInt64(1) << UInt64(shift)
        return (page & ~(span - 1)) + span
    }

    // MARK: - Allocation

    /// A zeroed page. `calloc` lets large fresh allocations come straight from zeroed kernel pages.
    private static func makePage() throws(NBDError) -> UnsafeMutableRawPointer {
        guard let page = calloc(1, pageSize) else {
            // ENOSPC rather than ENOMEM: the NBD protocol asks servers to avoid ENOMEM, and to a client
            // a full RAM disk is a full disk.
            throw NBDError(.noSpace, "out of memory for a new \(pageSize / 1024) KiB page of the memory backend")
        }
        return page
    }

    private static func makeTable() -> UnsafeMutablePointer<Atomic<UInt>>? {
        guard let raw = malloc(tableBytes) else { return nil }
        let table = raw.bindMemory(to: Atomic<UInt>.self, capacity: fanout)
        for index in 0..<fanout {
            (table + index).initialize(to: Atomic(0))
        }
        return table
    }

    private static func freeTable(_ table: UnsafeMutablePointer<Atomic<UInt>>) {
        table.deinitialize(count: fanout)
        free(table)
    }

    /// Frees a table and everything below it; `level` 0 is a leaf table whose slots hold pages.
    private static func release(table: UnsafeMutablePointer<Atomic<UInt>>, level: Int) {
        for index in 0..<fanout {
            let entry = table[index].load(ordering: .relaxed)
            guard entry != 0 else { continue }
            if level == 0 {
                free(UnsafeMutableRawPointer(bitPattern: entry))
            } else if let child = UnsafeMutablePointer<Atomic<UInt>>(bitPattern: entry) {
                release(table: child, level: level - 1)
            }
        }
        freeTable(table)
    }
}

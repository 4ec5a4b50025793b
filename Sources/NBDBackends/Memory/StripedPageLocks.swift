import Glibc
import Synchronization

/// Reader-writer spin locks, striped by page index, that make freeing a page of a ``MemoryStore``
/// safe against requests still copying to or from it.
///
/// Every request that touches a page's bytes (a read, a write, an in-place partial zero) holds its
/// stripe *shared* while it copies, so any number of them run at once. Only taking a page out of the
/// page table to free it (a whole-page zero or trim) holds the stripe *exclusive*. A page is thus
/// never freed while someone holds a pointer to it, and a lookup of a page that is being freed either
/// finished before the free (and the free waits for it) or starts after it (and sees the empty slot).
///
/// Spinning rather than sleeping is deliberate: a shared hold lasts one copy of at most one page
/// (64 KiB, a few microseconds) and exclusive holds are just a pointer swap, so a waiter would spend
/// longer in a futex round trip than in the wait. After a short spin the waiter yields its thread in
/// case the holder was preempted.
///
/// Each stripe owns a full cache line so that requests for neighbouring pages, which land on
/// different stripes, do not contend for one line.
struct StripedPageLocks: ~Copyable {
    /// The number of stripes; a power of two so a page index maps to one with a mask.
    static let stripeCount = 512
    /// `Atomic<Int>` slots per stripe: 8 × 8 bytes is one 64-byte cache line.
    static let stride = 8
    /// Set while a stripe is held exclusive; the bits below count shared holders.
    static let exclusiveBit = 1 << 62

    private let words: UnsafeMutablePointer<Atomic<Int>>

    init() {
        let count = Self.stripeCount * Self.stride
        // Cache-line aligned, so that each stripe is exactly one line.
        words = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Atomic<Int>>.stride, alignment: 64)
            .bindMemory(to: Atomic<Int>.self, capacity: count)
        for index in 0..<count {
            (words + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        words.deinitialize(count: Self.stripeCount * Self.stride)
        UnsafeMutableRawPointer(words).deallocate()
    }

    /// The lock word of the stripe that guards `page`.
    @inline(__always)
    func stripe(for page: UInt64) -> UnsafeMutablePointer<Atomic<Int>> {
        words + Int(truncatingIfNeeded: page & UInt64(Self.stripeCount - 1)) * Self.stride
    }

    /// Takes the stripe shared: waits only while a free of a page in this stripe is in progress.
    @inline(__always)
    func lockShared(_ lock: UnsafeMutablePointer<Atomic<Int>>) {
        // Optimistic increment: one atomic add when no free is in progress, the common case. The
        // acquire pairs with the release of the last exclusive holder, so a page slot emptied by that
        // free is seen as empty.
        while lock.pointee.wrappingAdd(1, ordering: .acquiring).oldValue & Self.exclusiveBit != 0 {
            lock.pointee.wrappingSubtract(1, ordering: .relaxed)
            var spins = 0
            while lock.pointee.load(ordering: .relaxed) & Self.exclusiveBit != 0 {
                Self.backOff(&spins)
            }
        }
    }

    /// Releases a shared hold; the release orders this holder's copy before a later free.
    @inline(__always)
    func unlockShared(_ lock: UnsafeMutablePointer<Atomic<Int>>) {
        lock.pointee.wrappingSubtract(1, ordering: .releasing)
    }

    /// Takes the stripe exclusive: first bars new shared holders, then waits for the current ones to
    /// finish their copies.
    func lockExclusive(_ lock: UnsafeMutablePointer<Atomic<Int>>) {
        var spins = 0
        while true {
            let value = lock.pointee.load(ordering: .relaxed)
            if value & Self.exclusiveBit == 0,
                lock.pointee.weakCompareExchange(
                    expected: value, desired: value | Self.exclusiveBit, ordering: .acquiring
                ).exchanged
            {
                break
            }
            Self.backOff(&spins)
        }
        // Shared holders that raced the bit undo their increment at once, so this drains.
        while lock.pointee.load(ordering: .acquiring) & ~Self.exclusiveBit != 0 {
            Self.backOff(&spins)
        }
    }

    /// Releases an exclusive hold. Subtracting rather than storing 0 keeps the transient increments
    /// of shared holders that are backing off intact.
    func unlockExclusive(_ lock: UnsafeMutablePointer<Atomic<Int>>) {
        lock.pointee.wrappingSubtract(Self.exclusiveBit, ordering: .releasing)
    }

    @inline(__always)
    private static func backOff(_ spins: inout Int) {
        spins += 1
        if spins > 64 {
            // The holder may have been preempted; let it run instead of burning our time slice.
            sched_yield()
        }
    }
}

import NBDCore
import NBDWire
import Synchronization

/// The server-wide budget for large request and reply payloads
/// (``ServerConfiguration/payloadMemoryBudget``): a connection reserves bytes before it reads a
/// large write's payload or performs a large read, and gives them back once the buffer is freed or
/// the reply sent. When the budget is spent, connections stop reading requests until it is given
/// back, so no set of clients can make the server allocate more.
///
/// Reserving is a compare-exchange on one atomic counter; there is no lock while the budget has
/// room. Connections that must wait queue in order (first come, first served, so a large request is
/// not starved by a stream of smaller ones) and park on a semaphore of their own, without spinning;
/// whoever gives bytes back hands them to the waiters at the head of the queue that fit and wakes
/// them. Only connection threads wait, never the cooperative pool.
///
/// Requests at most ``chargeThreshold`` long are never charged: their buffers are part of each
/// connection's fixed memory (the receive buffer, a batch of replies), so the 4 KiB request path
/// does not touch the budget at all.
final class PayloadBudget: Sendable {
    /// Payloads of at most this many bytes are not charged (see the type's description).
    static var chargeThreshold: Int { 64 << 10 }

    /// The most a connection holds at once while it takes more without waiting: a quarter of the
    /// budget, so that one client that stops reading its replies, whose connection keeps what it
    /// holds until they are sent, leaves at least three quarters to the others. A single request may
    /// be larger; a connection that holds nothing may always wait for one.
    let connectionShare: Int
    /// The budget in bytes; `Int.max` when unlimited.
    let limit: Int

    private let charged = Atomic<Int>(0)
    /// The most that was ever charged at once (for tests and diagnostics).
    private let peak = Atomic<Int>(0)
    /// How many connections are queued; while any are, nobody takes bytes past them.
    private let waiting = Atomic<Int>(0)
    private let queue = LockedValue<[Waiter]>([])
    /// When a wait was last reported (``ServerEvent/Kind/payloadBudgetWait``), in nanoseconds of the
    /// continuous clock since the budget was created.
    private let lastReport = Atomic<Int64>(-1)
    private let created = ContinuousClock.now

    private struct Waiter {
        let bytes: Int
        let wakeup: Semaphore
    }

    /// The connections' payload pools, whose free buffers are charged while kept: a connection
    /// that must wait makes them give their buffers back first, so memory kept for reuse never
    /// keeps a request waiting.
    private let pools = LockedValue<[ObjectIdentifier: WeakPool]>([:])

    private struct WeakPool: @unchecked Sendable {
        // @unchecked Sendable: only read and written under `pools`' lock.
        weak var pool: PayloadPool?
    }

    /// A budget of `limit` bytes, or unlimited for `nil` (or a limit of zero or less).
    init(limit: Int?) {
        let limit = limit.flatMap { $0 > 0 ? $0 : nil } ?? Int.max
        self.limit = limit
        connectionShare = limit == Int.max ? Int.max : max(1, limit / 4)
    }

    /// Whether every reservation succeeds at once (no budget configured).
    var isUnlimited: Bool { limit == Int.max }

    /// The bytes charged now.
    var chargedBytes: Int { charged.load(ordering: .relaxed) }

    /// The most bytes charged at once since the server started.
    var peakChargedBytes: Int { peak.load(ordering: .relaxed) }

    /// How many connections wait for the budget now.
    var waitingConnections: Int { waiting.load(ordering: .relaxed) }

    /// What a payload of `length` bytes is charged: nothing up to ``chargeThreshold`` or without a
    /// limit, else `length`, but at most the whole budget, so that a request larger than the budget
    /// runs once it has the budget to itself instead of never.
    func charge(forPayload length: Int) -> Int {
        guard length > Self.chargeThreshold, !isUnlimited else { return 0 }
        return min(length, limit)
    }

    /// Takes `bytes` if they are available now and nobody is queued. Never waits.
    func tryReserve(_ bytes: Int) -> Bool {
        if bytes == 0 { return true }
        if waiting.load(ordering: .sequentiallyConsistent) > 0 { return false }
        return takeIfAvailable(bytes)
    }

    /// Takes `bytes`, waiting in line until they are available. The caller must not hold charges
    /// that only it can give back (its replies not yet sent), or a full budget would never free up.
    func reserve(_ bytes: Int) {
        if tryReserve(bytes) { return }
        reclaimRetained()
        if tryReserve(bytes) { return }
        let wakeup = Semaphore()
        queue.withLock { queue in
            queue.append(Waiter(bytes: bytes, wakeup: wakeup))
            waiting.add(1, ordering: .sequentiallyConsistent)
            // Bytes given back before this waiter was counted were not handed to it: look again.
            grantLocked(&queue)
        }
        wakeup.wait()
    }

    /// Gives back `bytes` and hands them to the waiters at the head of the line that now fit.
    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        charged.subtract(bytes, ordering: .sequentiallyConsistent)
        if waiting.load(ordering: .sequentiallyConsistent) > 0 {
            queue.withLock { grantLocked(&$0) }
        }
    }

    /// Charges `bytes` of a free buffer a pool wants to keep for reuse, if they fit in half the
    /// budget and nobody waits; without a limit, always.
    func tryRetain(_ bytes: Int) -> Bool {
        if isUnlimited { return true }
        if waiting.load(ordering: .sequentiallyConsistent) > 0 { return false }
        return takeIfAvailable(bytes, below: limit / 2)
    }

    /// Lets `pool` keep charged free buffers; they are reclaimed when a connection must wait.
    func register(_ pool: PayloadPool) {
        pools.withLock { $0[ObjectIdentifier(pool)] = WeakPool(pool: pool) }
    }

    /// Forgets `pool` (its deinit gives its buffers back).
    func unregister(_ pool: PayloadPool) {
        _ = pools.withLock { $0.removeValue(forKey: ObjectIdentifier(pool)) }
    }

    /// Makes every registered pool free its kept buffers and give back their charge.
    func reclaimRetained() {
        // Strong references taken under the lock and used outside it: a pool whose last reference
        // is dropped here unregisters itself, which takes the lock again.
        let live = pools.withLock { $0.values.compactMap(\.pool) }
        for pool in live { pool.freeRetained() }
    }

    /// Whether a wait should be reported now: at most once a second per server, so that a busy
    /// server under a small budget does not log every request.
    func shouldReportWait() -> Bool {
        let now = Self.nanoseconds(created.duration(to: .now))
        let last = lastReport.load(ordering: .relaxed)
        guard last < 0 || now - last >= 1_000_000_000 else { return false }
        return lastReport.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
    }

    private func takeIfAvailable(_ bytes: Int, below ceiling: Int? = nil) -> Bool {
        let ceiling = ceiling ?? limit
        var current = charged.load(ordering: .relaxed)
        while true {
            guard bytes <= ceiling - current else { return false }
            let (exchanged, original) = charged.compareExchange(
                expected: current, desired: current + bytes, ordering: .sequentiallyConsistent)
            if exchanged {
                peak.max(current + bytes, ordering: .relaxed)
                return true
            }
            current = original
        }
    }

    /// Grants bytes to waiters in order while the head fits. Called with the queue locked.
    private func grantLocked(_ queue: inout [Waiter]) {
        var granted = 0
        while granted < queue.count, takeIfAvailable(queue[granted].bytes) {
            queue[granted].wakeup.signal()
            granted += 1
        }
        if granted > 0 {
            queue.removeFirst(granted)
            waiting.subtract(granted, ordering: .sequentiallyConsistent)
        }
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

import NBDCore
import Synchronization

/// A lock that a task waits for by suspending, never by blocking its thread: the noparallel filter's
/// serialization. Waiters are served in arrival order.
///
/// Taking a free lock and releasing it without waiters are one atomic compare-and-exchange each and
/// allocate nothing; only a task that has to wait takes the waiter list's mutex.
public final class AsyncLock: Sendable {
    /// 0: free; 1: held, nobody waiting; 2: held, and waiters may be queued (release looks).
    @usableFromInline let state = Atomic<Int>(0)
    private let waiters = LockedValue<[UnsafeContinuation<Void, Never>]>([])

    /// Creates a free lock.
    public init() {}

    /// Waits until the lock is free and takes it.
    @inlinable
    public func lock() async {
        if tryLock() { return }
        await lockSlowly()
    }

    /// Takes the lock if it is free; returns whether it did.
    @inlinable
    public func tryLock() -> Bool {
        state.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
    }

    @usableFromInline
    func lockSlowly() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let acquired = waiters.withLock { queue -> Bool in
                // Marking the lock "maybe waiters" under the list's mutex means a release that sees
                // the mark finds this continuation queued (it needs the mutex to look).
                if state.exchange(2, ordering: .acquiringAndReleasing) == 0 { return true }
                queue.append(continuation)
                return false
            }
            if acquired { continuation.resume() }
        }
    }

    /// Releases the lock, handing it to the longest waiter if there is one.
    @inlinable
    public func unlock() {
        if state.compareExchange(expected: 1, desired: 0, ordering: .releasing).exchanged { return }
        unlockSlowly()
    }

    @usableFromInline
    func unlockSlowly() {
        let next = waiters.withLock { queue -> UnsafeContinuation<Void, Never>? in
            guard !queue.isEmpty else {
                state.store(0, ordering: .releasing)
                return nil
            }
            // The lock passes straight to the waiter: the state stays "held".
            let first = queue.removeFirst()
            if queue.isEmpty { state.store(1, ordering: .releasing) }
            return first
        }
        next?.resume()
    }

    /// How many tasks wait for the lock (tests step on it).
    package var waiterCount: Int { waiters.withLock { $0.count } }

    /// Runs `body` holding the lock.
    @inlinable
    public func withLock<T>(_ body: () async throws(NBDError) -> T) async throws(NBDError) -> T {
        await lock()
        defer { unlock() }
        return try await body()
    }
}

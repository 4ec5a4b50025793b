import NBDCore
import Synchronization

/// Asynchronous locks for blocks, striped: block `i` uses lock `i % stripes`.
///
/// A read-modify-write, a fill from the layer below or a write-back of one block must not interleave
/// with another of the same block, and it awaits the layer below while it holds the lock, so the
/// lock suspends the waiting task rather than blocking its thread. Different blocks almost always
/// map to different stripes and proceed independently. An uncontended acquire is one short mutex
/// section and no suspension.
///
/// Callers hold at most one block lock at a time, so there is no lock order to get wrong.
package final class BlockLocks: Sendable {
    private struct Stripe: ~Copyable {
        var isHeld = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private final class Lock: Sendable {
        let state = LockedValue(Stripe())
    }

    private let stripes: [Lock]

    /// Creates `count` stripes.
    package init(stripes count: Int = 256) {
        stripes = (0..<max(1, count)).map { _ in Lock() }
    }

    private func stripe(_ block: UInt64) -> Lock {
        stripes[Int(block % UInt64(stripes.count))]
    }

    /// Waits for block `block`'s lock and takes it.
    package func acquire(_ block: UInt64) async {
        let lock = stripe(block)
        let taken = lock.state.withLock { state in
            if state.isHeld { return false }
            state.isHeld = true
            return true
        }
        if taken { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = lock.state.withLock { state in
                if state.isHeld {
                    state.waiters.append(continuation)
                    return false
                }
                state.isHeld = true
                return true
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Takes block `block`'s lock if nobody holds it; never waits.
    package func tryAcquire(_ block: UInt64) -> Bool {
        stripe(block).state.withLock { state in
            if state.isHeld { return false }
            state.isHeld = true
            return true
        }
    }

    /// Gives block `block`'s lock to the next waiter, or frees it.
    package func release(_ block: UInt64) {
        let next: CheckedContinuation<Void, Never>? = stripe(block).state.withLock { state in
            if state.waiters.isEmpty {
                state.isHeld = false
                return nil
            }
            // The lock passes straight to the first waiter (it stays held), so nobody can barge in.
            return state.waiters.removeFirst()
        }
        next?.resume()
    }

    /// Runs `body` holding block `block`'s lock.
    package func withLock<T>(_ block: UInt64, _ body: () async throws(NBDError) -> T) async throws(NBDError) -> T {
        await acquire(block)
        defer { release(block) }
        return try await body()
    }
}

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
/// Callers hold one block lock at a time, or the locks of one run of blocks taken together by
/// ``acquire(_:)-(Range<UInt64>)`` in ascending stripe order, so no two callers wait for each other
/// in a cycle.
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

    /// The number of stripes: the most blocks ``acquire(_:)-(Range<UInt64>)`` locks at once
    /// without taking every stripe.
    package var stripeCount: Int { stripes.count }

    /// Waits for block `block`'s lock and takes it.
    package func acquire(_ block: UInt64) async {
        await acquire(stripe: stripe(block))
    }

    /// Waits for the locks of every block in `blocks` and takes them (for one write of a run of
    /// whole blocks). The stripes are taken in ascending order, each once: the one order every
    /// caller holding several locks uses, so two of them never wait for each other in a cycle (and
    /// a caller holding one lock waits for no other).
    package func acquire(_ blocks: Range<UInt64>) async {
        let (low, high) = stripeRanges(blocks)
        for index in low { await acquire(stripe: stripes[index]) }
        for index in high { await acquire(stripe: stripes[index]) }
    }

    /// Releases what ``acquire(_:)-(Range<UInt64>)`` took.
    package func release(_ blocks: Range<UInt64>) {
        let (low, high) = stripeRanges(blocks)
        for index in low { release(stripe: stripes[index]) }
        for index in high { release(stripe: stripes[index]) }
    }

    /// The stripes of `blocks` as two ascending ranges of indices (a run wraps past the last stripe
    /// at most once when shorter than the stripe count).
    private func stripeRanges(_ blocks: Range<UInt64>) -> (Range<Int>, Range<Int>) {
        let count = stripes.count
        guard blocks.count < count else { return (0..<count, 0..<0) }
        let first = Int(blocks.lowerBound % UInt64(count))
        let end = first + blocks.count
        if end <= count { return (first..<end, 0..<0) }
        return (0..<(end - count), first..<count)
    }

    private func acquire(stripe lock: Lock) async {
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
        release(stripe: stripe(block))
    }

    private func release(stripe lock: Lock) {
        let next: CheckedContinuation<Void, Never>? = lock.state.withLock { state in
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

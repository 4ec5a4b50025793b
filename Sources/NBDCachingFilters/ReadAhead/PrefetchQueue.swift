import NBDCore
import Synchronization

/// One connection's background prefetches: at most one runs at a time and at most
/// ``maximumPending`` wait, newest kept, so a client reading fast never builds up a backlog and its
/// own reads never wait for a prefetch.
package final class PrefetchQueue: Sendable {
    /// The most prefetches waiting behind the running one; older ones are dropped first (the
    /// client has moved on from them).
    package static let maximumPending = 2

    private struct State {
        var pending: [(offset: UInt64, count: UInt64)] = []
        var isRunning = false
        var isClosed = false
        var idle: [CheckedContinuation<Void, Never>] = []
    }

    private let state = LockedValue(State())
    private let executor: PrefetchThread
    private let prefetch: @Sendable (UInt64, UInt64) async -> Void

    /// Creates a queue that runs `prefetch(offset, count)` on `executor`.
    package init(executor: PrefetchThread, prefetch: @escaping @Sendable (UInt64, UInt64) async -> Void) {
        self.executor = executor
        self.prefetch = prefetch
    }

    /// Queues a prefetch and returns at once.
    package func submit(offset: UInt64, count: UInt64) {
        let start = state.withLock { state -> Bool in
            guard !state.isClosed else { return false }
            if state.pending.count >= Self.maximumPending { state.pending.removeFirst() }
            state.pending.append((offset, count))
            guard !state.isRunning else { return false }
            state.isRunning = true
            return true
        }
        guard start else { return }
        Task(executorPreference: executor) { await self.drain() }
    }

    private func drain() async {
        while true {
            let step: (work: (offset: UInt64, count: UInt64)?, idle: [CheckedContinuation<Void, Never>]) =
                state.withLock { state in
                    guard state.pending.isEmpty else { return (state.pending.removeFirst(), []) }
                    // Deciding "nothing left" and clearing isRunning in one critical section: a submit
                    // either ran before (and its work was taken above) or sees isRunning false.
                    state.isRunning = false
                    defer { state.idle.removeAll() }
                    return (nil, state.idle)
                }
            guard let work = step.work else {
                for waiter in step.idle { waiter.resume() }
                return
            }
            await prefetch(work.offset, work.count)
        }
    }

    /// Drops waiting prefetches, refuses new ones, and returns once the running one has finished,
    /// so the layer below can be closed safely.
    package func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = state.withLock { state -> Bool in
                state.isClosed = true
                state.pending.removeAll()
                guard state.isRunning else { return true }
                state.idle.append(continuation)
                return false
            }
            if finished { continuation.resume() }
        }
    }
}

import NBDCore
import Synchronization

/// The slow requests one connection has running on the pool, so that they can be cancelled when the
/// connection ends without a graceful disconnect (the client vanished, or the server is stopping).
///
/// Cancellation only ends waits that check for it: the delay and rate filters' `Task.sleep`, which
/// then fail their request with `ESHUTDOWN`, as nbdkit's sleeps end when the server stops or the
/// client disconnects. Storage calls are not interrupted and complete as before. Without it, a
/// request waiting out `delay-read=3600` or a tiny `rate` kept its connection, and so the server's
/// shutdown, waiting for that long.
final class SlowRequestTasks: Sendable {
    private struct State {
        var running: [UInt64: Task<Void, Never>] = [:]
        /// Requests that finished before their task was registered (the task ran first).
        var finishedEarly: Set<UInt64> = []
        var cancelled = false
        var nextID: UInt64 = 0
    }
    private let state = LockedValue(State())

    /// A number for the next request.
    func reserveID() -> UInt64 {
        state.withLock { state in
            state.nextID &+= 1
            return state.nextID
        }
    }

    /// Registers the task running request `id`; cancels it at once when ``cancelAll()`` already ran.
    func register(_ id: UInt64, _ task: Task<Void, Never>) {
        let cancelNow = state.withLock { state -> Bool in
            if state.finishedEarly.remove(id) != nil { return false }
            state.running[id] = task
            return state.cancelled
        }
        if cancelNow { task.cancel() }
    }

    /// Called by request `id`'s task when it is done.
    func finished(_ id: UInt64) {
        state.withLock { state in
            if state.running.removeValue(forKey: id) == nil { state.finishedEarly.insert(id) }
        }
    }

    /// Cancels every running request and any registered later.
    func cancelAll() {
        let tasks = state.withLock { state -> [Task<Void, Never>] in
            state.cancelled = true
            return Array(state.running.values)
        }
        for task in tasks { task.cancel() }
    }
}

import NBDCore
import Synchronization

/// Holds requests back while paused, for nbdkit's pause filter: each request passes through
/// ``enter()`` and ``leave()``; ``pause(whenIdle:)`` stops new requests and reports when those
/// already running have finished; ``resume()`` lets the held ones go.
public final class PauseGate: Sendable {
    private struct State {
        var paused = false
        var running = 0
        var held: [CheckedContinuation<Void, Never>] = []
        var idleWaiters: [@Sendable () -> Void] = []
    }

    private let state = LockedValue(State())

    /// Creates an open gate.
    public init() {}

    /// Whether requests are held.
    public var isPaused: Bool { state.withLock { $0.paused } }

    /// Requests running now (entered and not left).
    public var runningRequests: Int { state.withLock { $0.running } }

    /// Requests waiting for ``resume()``.
    public var heldRequests: Int { state.withLock { $0.held.count } }

    /// Waits while paused, then counts the request as running.
    public func enter() async {
        let passed = state.withLock { state -> Bool in
            guard !state.paused else { return false }
            state.running += 1
            return true
        }
        if passed { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let passedNow = state.withLock { state -> Bool in
                guard state.paused else {
                    state.running += 1
                    return true
                }
                state.held.append(continuation)
                return false
            }
            if passedNow { continuation.resume() }
        }
    }

    /// Counts a request as finished.
    public func leave() {
        let waiters = state.withLock { state -> [@Sendable () -> Void] in
            state.running -= 1
            guard state.running == 0, state.paused else { return [] }
            defer { state.idleWaiters = [] }
            return state.idleWaiters
        }
        for waiter in waiters { waiter() }
    }

    /// Holds new requests; calls `whenIdle` once no request is running (at once if none is).
    public func pause(whenIdle: @escaping @Sendable () -> Void) {
        let idle = state.withLock { state -> Bool in
            state.paused = true
            if state.running == 0 { return true }
            state.idleWaiters.append(whenIdle)
            return false
        }
        if idle { whenIdle() }
    }

    /// Lets held and new requests run.
    public func resume() {
        let held = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.paused = false
            state.running += state.held.count
            defer { state.held = [] }
            return state.held
        }
        for continuation in held { continuation.resume() }
    }
}

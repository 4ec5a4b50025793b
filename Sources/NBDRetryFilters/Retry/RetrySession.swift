import NBDCore
import Synchronization

/// The backends one connection's retry filter has opened below it: the current one, and those it
/// replaced that requests still use. A backend is closed when it has been replaced and its last
/// request finished, never under a request still running on it.
final class RetrySession<Next: BlockBackend>: Sendable {
    /// A backend lent to one request.
    struct Lease: Sendable {
        let backend: Next
        let generation: UInt64
        /// How many writes the backend had acknowledged when the request started: a flush covers
        /// those, not writes that finish while it runs.
        let writesBefore: UInt64
    }

    private struct Opened {
        var backend: Next
        var generation: UInt64
        var users: Int
        /// Writes, zeroes and trims acknowledged, and how many of them a successful flush covers.
        var writes: UInt64 = 0
        var flushedWrites: UInt64 = 0

        var hasUnflushedWrites: Bool { writes > flushedWrites }

        init(backend: Next, generation: UInt64) {
            self.backend = backend
            self.generation = generation
            self.users = 0
        }

        mutating func finish(_ lease: Lease, wrote: Bool, flushed: Bool) {
            users -= 1
            if wrote { writes += 1 }
            if flushed { flushedWrites = max(flushedWrites, lease.writesBefore) }
        }
    }

    private struct State {
        var current: Opened?
        var retired: [Opened] = []
        var generation: UInt64 = 0
        var isReopening = false
        var reopenWaiters: [CheckedContinuation<Void, Never>] = []
        var reopens = 0
        /// Set when a replaced backend with unflushed writes could not be flushed before closing:
        /// those writes may be gone, so the next flush must not report success.
        var mayHaveLostWrites = false
    }

    private enum ReopenStep {
        case done
        case wait
        case reopen(retired: Opened?)
    }

    private let state: LockedValue<State>
    let connection: ConnectionInfo
    let open: @Sendable (ConnectionInfo) async throws(NBDError) -> Next
    let reopensReadOnly: Bool
    /// Whether `open` opens a new backend; `false` when the filter was given one already open (then a
    /// retry runs on that one again).
    let canReopen: Bool

    /// `failedOpens` counts the attempts to open `first` that failed: they count as reopens, so
    /// `retry-readonly` applies to a connection whose first open had to be retried.
    init(
        first: Next, connection: ConnectionInfo, reopensReadOnly: Bool, canReopen: Bool = true, failedOpens: Int = 0,
        open: @escaping @Sendable (ConnectionInfo) async throws(NBDError) -> Next
    ) {
        self.canReopen = canReopen
        state = LockedValue(State(current: Opened(backend: first, generation: 0), reopens: failedOpens))
        self.connection = connection
        self.reopensReadOnly = reopensReadOnly
        self.open = open
    }

    /// The current backend, or `nil` while none is open (the last reopen failed).
    var current: Next? { state.withLock { $0.current?.backend } }

    /// How many times the layer below was reopened.
    var reopenCount: Int { state.withLock { $0.reopens } }

    /// Whether the layer below has been reopened at least once.
    var hasReopened: Bool { state.withLock { $0.reopens > 0 } }

    /// Lends the current backend to a request, or returns `nil` when none is open.
    func acquire() -> Lease? {
        state.withLock { state in
            guard state.current != nil else { return nil }
            state.current!.users += 1
            return Lease(
                backend: state.current!.backend, generation: state.current!.generation,
                writesBefore: state.current!.writes)
        }
    }

    /// Returns a lent backend; closes it if it was replaced and this was its last request.
    /// `wrote` records a successful write, zero or trim; `flushed` a successful flush.
    func release(_ lease: Lease, wrote: Bool = false, flushed: Bool = false) async {
        let finished: Opened? = state.withLock { state in
            if state.current?.generation == lease.generation {
                state.current!.finish(lease, wrote: wrote, flushed: flushed)
                return nil
            }
            guard let index = state.retired.firstIndex(where: { $0.generation == lease.generation }) else { return nil }
            state.retired[index].finish(lease, wrote: wrote, flushed: flushed)
            return state.retired[index].users == 0 ? state.retired.remove(at: index) : nil
        }
        if let finished { await retire(finished) }
    }

    /// Reports and clears a possible loss of unflushed writes (see ``State/mayHaveLostWrites``).
    func takeLostWrites() -> Bool {
        state.withLock { state in
            defer { state.mayHaveLostWrites = false }
            return state.mayHaveLostWrites
        }
    }

    /// Replaces the backend a request failed on (`generation`, or `nil` if none was open) with a
    /// newly opened one. If another request already replaced it, returns at once; if another is
    /// replacing it now, waits for that. Throws if opening fails; then no backend is open.
    func reopen(after generation: UInt64?) async throws(NBDError) {
        guard canReopen else { return }
        let step: ReopenStep = state.withLock { state in
            if state.isReopening { return .wait }
            // Someone else replaced the backend since this request took it: use theirs.
            if let current = state.current, current.generation != generation { return .done }
            state.isReopening = true
            state.reopens += 1
            guard let old = state.current else { return .reopen(retired: nil) }
            state.current = nil
            if old.users == 0 { return .reopen(retired: old) }
            // Still in use by other requests: the last of them closes it (see release).
            state.retired.append(old)
            return .reopen(retired: nil)
        }
        switch step {
        case .done:
            return
        case .wait:
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let stillReopening = state.withLock { state in
                    if state.isReopening { state.reopenWaiters.append(continuation) }
                    return state.isReopening
                }
                if !stillReopening { continuation.resume() }
            }
            return
        case .reopen(let retired):
            if let retired { await retire(retired) }
        }
        var below = connection
        if reopensReadOnly { below.isReadOnly = true }
        var failure: NBDError?
        var opened: Next?
        do {
            opened = try await open(below)
        } catch {
            failure = error
        }
        let waiters = state.withLock { state in
            state.generation += 1
            if let opened {
                state.current = Opened(backend: opened, generation: state.generation)
            }
            state.isReopening = false
            defer { state.reopenWaiters = [] }
            return state.reopenWaiters
        }
        for waiter in waiters { waiter.resume() }
        if let failure { throw failure }
    }

    /// Closes a replaced backend that no request uses, flushing it first if it holds writes that were
    /// never flushed (its cache would otherwise go with it).
    private func retire(_ old: Opened) async {
        if old.hasUnflushedWrites && old.backend.capabilities.canFlush {
            do {
                try await old.backend.flush(flags: [])
            } catch {
                state.withLock { $0.mayHaveLostWrites = true }
            }
        }
        await old.backend.close()
    }

    /// Closes every backend (the connection ended; no request is running).
    func closeAll() async {
        let all: [Opened] = state.withLock { state in
            var all = state.retired
            if let current = state.current { all.append(current) }
            state.retired = []
            state.current = nil
            return all
        }
        for opened in all { await opened.backend.close() }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A per-thread marker that says "a request task resumed here may run here, now": the thread is a
/// dedicated one (not the cooperative pool, so the task may block in `send`), it holds no lock, and
/// it is at a point where running other code is safe.
///
/// The NBD client's reply reader sets it for its whole life, and the server's connection thread
/// while it starts a request whose operation suspends (`Capabilities.suspendingOperations`). The
/// server's executor for such requests runs a job at once when the marker is set and hands it to
/// its pool otherwise, so a proxied request that waits for an upstream reply costs no thread
/// hand-off in either direction: it starts on the connection's thread, and its reply is written by
/// the thread that received the upstream's reply.
///
/// Jobs never nest: a job that resumes another task while it runs (a lock handed on) queues it, and
/// the queue is drained when the running job returns. Code that wants to batch work done by the
/// jobs of one scope (replies to the same client) registers a ``BatchEndAction``; the thread that
/// owns the scope calls ``endBatch()`` before it blocks, and leaving the outermost scope does too.
package enum InlineResumption {
    /// Something to do once when the current batch ends, such as sending replies appended by jobs.
    package protocol BatchEndAction: AnyObject {
        func batchEnded()
    }

    private final class ThreadState {
        var depth = 0
        var leaving = false
        var owner: ObjectIdentifier?
        var runningJob = false
        var queued: [(UnownedJob, UnownedTaskExecutor)] = []
        var queuedHead = 0
        var batchEndActions: [any BatchEndAction] = []
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<AnyObject>.fromOpaque(pointer).release()
        }
        return key
    }()

    private static var current: ThreadState? {
        guard let pointer = pthread_getspecific(key) else { return nil }
        return Unmanaged<ThreadState>.fromOpaque(pointer).takeUnretainedValue()
    }

    private static var currentOrNew: ThreadState {
        if let state = current { return state }
        let state = ThreadState()
        pthread_setspecific(key, Unmanaged.passRetained(state as AnyObject).toOpaque())
        return state
    }

    /// Whether the current thread is inside a scope.
    package static var isActive: Bool {
        guard let state = current else { return false }
        return state.depth > 0
    }

    /// Whether an executor may run a job enqueued on this thread now: inside a scope, unless
    /// ``leaveOnNextSuspension()`` asked for the next job to go elsewhere (that request is used up).
    package static func mayRunEnqueuedJob() -> Bool {
        guard let state = current, state.depth > 0 else { return false }
        if state.leaving {
            state.leaving = false
            return false
        }
        return true
    }

    /// Makes the next job enqueued from this thread go to its executor's fallback instead of
    /// running here. Call it right before `await Task.yield()` to move the running task off this
    /// thread (the yield enqueues it on its executor, from this thread).
    package static func leaveOnNextSuspension() {
        guard let state = current, state.depth > 0 else { return }
        state.leaving = true
    }

    /// Whether the outermost scope on the current thread was entered by `owner`.
    package static func isOwned(by owner: AnyObject) -> Bool {
        guard let state = current, state.depth > 0 else { return false }
        return state.owner == ObjectIdentifier(owner)
    }

    /// Runs `body` with the marker set on this thread. Scopes nest; leaving the outermost one ends
    /// the batch (``endBatch()``). `owner` names whoever entered the outermost scope.
    package static func withScope<Result, Failure: Error>(
        owner: AnyObject? = nil, _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let state = currentOrNew
        if state.depth == 0 { state.owner = owner.map(ObjectIdentifier.init) }
        state.depth += 1
        defer {
            state.depth -= 1
            if state.depth == 0 {
                runBatchEndActions(state)
                state.owner = nil
            }
        }
        return try body()
    }

    /// Enters a scope that spans suspension points of a task pinned to this thread (the server's
    /// connection loop), where ``withScope(owner:_:)`` cannot be used. Pair with ``leave()``, and
    /// call ``endBatch()`` before every point where the thread may block.
    package static func enter() {
        currentOrNew.depth += 1
    }

    /// Leaves a scope entered with ``enter()``; leaving the outermost one ends the batch.
    package static func leave() {
        let state = currentOrNew
        state.depth -= 1
        if state.depth == 0 {
            runBatchEndActions(state)
            state.owner = nil
        }
    }

    /// Runs `job` on this thread now, or, when a job is already running here, once it returns.
    /// Only call it inside a scope.
    package static func run(_ job: UnownedJob, on executor: UnownedTaskExecutor) {
        let state = currentOrNew
        if state.runningJob {
            state.queued.append((job, executor))
            return
        }
        state.runningJob = true
        job.runSynchronously(on: executor)
        while state.queuedHead < state.queued.count {
            let (next, nextExecutor) = state.queued[state.queuedHead]
            state.queuedHead += 1
            next.runSynchronously(on: nextExecutor)
        }
        state.queued.removeAll(keepingCapacity: true)
        state.queuedHead = 0
        state.runningJob = false
    }

    /// Registers `action` to run when the current batch ends; an action already registered (the
    /// same object) is not added twice. Only call it inside a scope.
    package static func atBatchEnd(_ action: any BatchEndAction) {
        let state = currentOrNew
        for registered in state.batchEndActions where registered === action { return }
        state.batchEndActions.append(action)
    }

    /// Runs the registered batch-end actions. The thread that owns a scope calls this before it
    /// blocks (waiting for more replies), so work batched by the jobs it ran is not held back.
    package static func endBatch() {
        guard let state = current else { return }
        runBatchEndActions(state)
    }

    private static func runBatchEndActions(_ state: ThreadState) {
        while !state.batchEndActions.isEmpty {
            let actions = state.batchEndActions
            state.batchEndActions.removeAll(keepingCapacity: true)
            for action in actions { action.batchEnded() }
        }
    }
}

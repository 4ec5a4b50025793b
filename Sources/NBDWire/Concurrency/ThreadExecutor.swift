import NBDCore
import Synchronization

/// A task executor that owns one thread, which runs the jobs enqueued on it in batches.
///
/// The server pins each connection's long-lived task to one (the task may block in `recv` and
/// `send` without starving the cooperative pool, and backends that do not suspend run inline with
/// no thread hop; a backend that does suspend resumes on the same thread). The `nbd` backend sends
/// large writes upstream from one, so that the connection's thread receives the next request
/// meanwhile.
package final class ThreadExecutor: TaskExecutor {
    private struct State {
        var jobs: [UnownedJob] = []
        var stopping = false
        var exited = false
    }

    private let state = LockedValue(State())
    private let wakeup = Semaphore()
    private let runsResumptionsInline: Bool
    /// How many jobs this executor's own thread has run (a test hook).
    package let jobsRunOnThread = Atomic<Int>(0)

    /// Creates the executor and starts its thread; `nil` if no thread could be created.
    ///
    /// With `runsResumptionsInline`, a job enqueued by a thread marked with `InlineResumption` (the
    /// NBD client's reply reader resuming a request) runs at once on that thread instead, so only
    /// the start of a request changes threads.
    package init?(name: String, runsResumptionsInline: Bool = false) {
        self.runsResumptionsInline = runsResumptionsInline
        let started = ThreadStarter.start(name: name) { [self] in loop() }
        if !started { return nil }
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if runsResumptionsInline && InlineResumption.mayRunEnqueuedJob() {
            InlineResumption.run(unowned, on: asUnownedTaskExecutor())
            return
        }
        let queued = state.withLock { state -> Bool in
            if state.exited { return false }
            state.jobs.append(unowned)
            return true
        }
        if queued {
            wakeup.signal()
        } else {
            // The thread is gone (its connection or backend ended); a late job, such as a child task
            // a backend started, still has to run somewhere.
            globalConcurrentExecutor.enqueue(unowned)
        }
    }

    /// Lets the thread exit once its queue is empty: the last act of a connection's pinned task, or
    /// a backend's close.
    package func stop() {
        state.withLock { $0.stopping = true }
        wakeup.signal()
    }

    private func loop() {
        var batch: [UnownedJob] = []
        batch.reserveCapacity(16)
        while true {
            wakeup.wait()
            let done = state.withLock { state -> Bool in
                if state.jobs.isEmpty {
                    if state.stopping { state.exited = true }
                    return state.stopping
                }
                swap(&batch, &state.jobs)
                return false
            }
            if done { return }
            jobsRunOnThread.add(batch.count, ordering: .relaxed)
            let executor = asUnownedTaskExecutor()
            for job in batch {
                job.runSynchronously(on: executor)
            }
            batch.removeAll(keepingCapacity: true)
            // Jobs that arrived while this batch ran have their own semaphore signals.
        }
    }
}

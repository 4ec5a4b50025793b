import NBDCore
import NBDWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A task executor that owns one thread: the thread runs a job loop, and the connection's single
/// long-lived task is pinned to it with `Task(executorPreference:)`.
///
/// Because the thread belongs to the connection, the task may block in `recv` and `send` without
/// starving the cooperative pool, and backends that do not suspend run inline with no thread hop.
/// A backend that does suspend resumes on this same thread.
final class ConnectionExecutor: TaskExecutor {
    private struct State {
        var jobs: [UnownedJob] = []
        var spare: [UnownedJob] = []
        var stopping = false
        var exited = false
    }

    private let state = LockedValue(State())
    private let wakeup = Semaphore()

    /// Creates the executor and starts its thread.
    init?(name: String) {
        let started = ThreadStarter.start(name: name) { [self] in loop() }
        if !started { return nil }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let runHere = state.withLock { state -> Bool in
            if state.exited { return false }
            state.jobs.append(unowned)
            return true
        }
        if runHere {
            wakeup.signal()
        } else {
            // The thread is gone (its connection ended); a late job, such as a child task a backend
            // started, still has to run somewhere.
            globalConcurrentExecutor.enqueue(unowned)
        }
    }

    /// Lets the thread exit once its queue is empty. Call it as the last act of the pinned task.
    func stop() {
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
            let executor = asUnownedTaskExecutor()
            for job in batch {
                job.runSynchronously(on: executor)
            }
            batch.removeAll(keepingCapacity: true)
            // Jobs that arrived while this batch ran have their own semaphore signals.
        }
    }
}

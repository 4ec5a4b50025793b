import Synchronization
import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// A thread of one client connection's `nbd` backend that sends large write payloads upstream, so
/// that the server's connection thread receives the client's next request meanwhile instead of
/// copying a megabyte into the upstream socket first (issue #25: nbdkit overlaps the two on its
/// worker threads).
///
/// A write hops here with `withTaskExecutorPreference`, is sent from this thread and suspends until
/// the upstream's reply. A job enqueued by a thread marked with NBDCore's `InlineResumption` (the
/// NBD client's reply reader resuming the write) runs at once on that thread, so only the start of
/// the write changes threads: the reply is written from the reader thread as before.
package final class ForwardingExecutor: TaskExecutor {
    private struct State {
        var jobs: [UnownedJob] = []
        var stopping = false
        var exited = false
    }

    private let state = LockedValue(State())
    private let wakeup = Wakeup()
    /// The jobs this executor's own thread ran (a test hook: large writes are started here).
    package let jobsRunOnThread = LockedValue(0)

    /// Creates the executor and starts its thread; `nil` if no thread could be created.
    init?() {
        let started = Self.startThread { [self] in loop() }
        if !started { return nil }
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if InlineResumption.mayRunEnqueuedJob() {
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
            // The backend was closed; a late job still has to run somewhere.
            globalConcurrentExecutor.enqueue(unowned)
        }
    }

    /// Lets the thread exit once its queue is empty (when the backend closes).
    func stop() {
        state.withLock { $0.stopping = true }
        wakeup.signal()
    }

    private func loop() {
        var batch: [UnownedJob] = []
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
            jobsRunOnThread.withLock { $0 += batch.count }
            let executor = asUnownedTaskExecutor()
            for job in batch { job.runSynchronously(on: executor) }
            batch.removeAll(keepingCapacity: true)
        }
    }

    /// A POSIX semaphore the thread sleeps on between jobs.
    private final class Wakeup: @unchecked Sendable {
        // @unchecked Sendable: sem_t is made for concurrent use; the pointer never changes.
        private let handle: UnsafeMutablePointer<sem_t>

        init() {
            handle = .allocate(capacity: 1)
            sem_init(handle, 0, 0)
        }

        deinit {
            sem_destroy(handle)
            handle.deallocate()
        }

        func signal() { sem_post(handle) }

        func wait() {
            while sem_wait(handle) != 0 && errno == EINTR {}
        }
    }

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Runs `body` on a new detached thread.
    private static func startThread(_ body: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let result = pthread_create(
            &thread, &attributes,
            { context in
                Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
                return nil
            }, box)
        if result != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            return false
        }
        return true
    }
}

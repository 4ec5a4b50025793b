import NBDCore

/// The executor of requests whose operation suspends (`Capabilities.suspendingOperations`): it runs
/// a job on the thread that enqueued it when that thread is marked with NBDCore's
/// `InlineResumption` scope, and hands it to the slow-operation pool otherwise.
///
/// Two threads are marked: the connection's own, while it starts such a request (so the request
/// runs until its first suspension without a hand-off, as an inline one would), and the NBD
/// client's reply reader (so a proxied request resumed by its upstream reply writes its reply right
/// there). Neither is a cooperative-pool thread, so the request may block in `send`; both hold no
/// lock when they start or resume a request. A task resumed anywhere else (a timer, a cooperative
/// thread) goes to the pool, whose threads may block too.
final class SuspendedRequestExecutor: TaskExecutor {
    private let fallback: SlowOperationPool

    init(fallback: SlowOperationPool) {
        self.fallback = fallback
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if InlineResumption.mayRunEnqueuedJob() {
            InlineResumption.run(unowned, on: asUnownedTaskExecutor())
        } else {
            fallback.enqueue(unowned)
        }
    }
}

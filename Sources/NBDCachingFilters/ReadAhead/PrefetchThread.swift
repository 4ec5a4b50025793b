import Dispatch
import Foundation
import NBDCore
import Synchronization

/// A dedicated thread that runs the readahead filter's prefetches, so that the cache requests they
/// send down (which may block in `pread` or wait for a slow backend) never occupy a thread of the
/// cooperative pool or of a connection.
package final class PrefetchThread: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `jobs` is behind a lock and `wakeUp` is a thread-safe semaphore.
    private let jobs = LockedValue<(queue: [UnownedJob], stopped: Bool)>(([], false))
    private let wakeUp = DispatchSemaphore(value: 0)

    /// Starts the thread.
    package init(name: String = "nbd-readahead") {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.queue.append(job) }
        wakeUp.signal()
    }

    /// Ends the thread once the jobs queued so far have run.
    package func stop() {
        jobs.withLock { $0.stopped = true }
        wakeUp.signal()
    }

    private func run() {
        while true {
            wakeUp.wait()
            let (job, stopped): (UnownedJob?, Bool) = jobs.withLock { jobs in
                (jobs.queue.isEmpty ? nil : jobs.queue.removeFirst(), jobs.stopped)
            }
            if let job {
                job.runSynchronously(on: asUnownedTaskExecutor())
            } else if stopped {
                return
            }
        }
    }
}

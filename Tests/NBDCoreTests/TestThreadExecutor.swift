import Foundation
import Glibc
import NBDCore
import NBDTestSupport
import Synchronization

/// A task executor with one thread of its own, so a test can check where a job ran.
final class TestThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let queue = LockedValue<(jobs: [UnownedJob], stopped: Bool)>(([], false))
    private let available = DispatchSemaphore(value: 0)
    private let started = DispatchSemaphore(value: 0)
    private var thread: Thread?
    private var threadIdentity: pthread_t?

    init() {
        let thread = Thread { [unowned self] in self.run() }
        self.thread = thread
        thread.start()
        started.waitOrFail("the executor thread to start")
    }

    /// Whether the caller runs on this executor's thread.
    var isCurrent: Bool {
        guard let threadIdentity else { return false }
        return pthread_equal(pthread_self(), threadIdentity) != 0
    }

    private func run() {
        threadIdentity = pthread_self()
        started.signal()
        while true {
            available.wait()
            let next = queue.withLock { state -> UnownedJob? in
                state.jobs.isEmpty ? nil : state.jobs.removeFirst()
            }
            guard let next else { return }
            next.runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    func enqueue(_ job: UnownedJob) {
        queue.withLock { $0.jobs.append(job) }
        available.signal()
    }

    /// Ends the thread once the jobs queued so far have run.
    func stop() {
        available.signal()
    }
}

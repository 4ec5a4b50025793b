import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A `TaskExecutor` with its own threads, for flushes that block (the role the server's slow-operation
/// pool plays). Jobs run in arrival order on whichever thread is free.
final class ThreadPoolExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: the job queue is inside a Mutex; the semaphore is thread-safe.
    private let jobs = Mutex<[UnownedJob]>([])
    private let available = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init(threads: Int) {
        sem_init(available, 0, 0)
        for _ in 0..<threads {
            let context = Unmanaged.passRetained(self).toOpaque()
            var thread = pthread_t()
            let result = pthread_create(&thread, nil, { context in
                let executor = Unmanaged<ThreadPoolExecutor>.fromOpaque(context!).takeRetainedValue()
                executor.run()
                return nil
            }, context)
            precondition(result == 0, "pthread_create failed: \(result)")
            pthread_detach(thread)
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        jobs.withLock { $0.append(unowned) }
        sem_post(available)
    }

    private func run() {
        while true {
            while sem_wait(available) != 0 {}
            let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
            job?.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A `TaskExecutor` with its own threads: for flushes that block (the role the server's slow-operation
/// pool plays), and for tasks that must really run in parallel (the benchmark runner keeps one of the
/// 2 cooperative-pool threads of this machine busy). Jobs run in arrival order on whichever thread is
/// free. The threads live as long as the process.
public final class ThreadPoolExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: the job queue is inside a Mutex; the semaphore is thread-safe.
    private let jobs = Mutex<[UnownedJob]>([])
    private let available = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    /// Starts `threads` threads.
    public init(threads: Int) {
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

    public func enqueue(_ job: consuming ExecutorJob) {
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

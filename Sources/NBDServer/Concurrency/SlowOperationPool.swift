import NBDCore
import NBDWire
import Synchronization

/// A small pool of dedicated threads, shared by all connections of a server, that runs the requests
/// a backend declares slow (`Capabilities.slowOperations`): a disk sync, a multi-conn flush
/// fan-out, a remote call.
///
/// It is a `TaskExecutor`, so a request is a child task created with `addTask(executorPreference:)`;
/// the backend code it awaits runs on these threads rather than the connection's, and the requests
/// queued behind it on the connection are not stalled. It never blocks the cooperative pool.
final class SlowOperationPool: TaskExecutor {
    private struct State {
        var jobs: [UnownedJob] = []
        var head = 0
        var stopping = false
        var running: Int
    }

    private let state: LockedValue<State>
    private let wakeup = Semaphore()
    private let threadCount: Int

    /// Starts `threads` threads.
    init(threads: Int, name: String = "nbd-slow") {
        threadCount = max(1, threads)
        state = LockedValue(State(running: 0))
        for index in 0..<threadCount {
            if ThreadStarter.start(name: "\(name)-\(index)", { [self] in loop() }) {
                state.withLock { $0.running += 1 }
            }
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        enqueue(UnownedJob(job))
    }

    /// Queues a job that another executor hands on (see ``SuspendedRequestExecutor``).
    func enqueue(_ unowned: UnownedJob) {
        let accepted = state.withLock { state -> Bool in
            guard state.running > 0 else { return false }
            state.jobs.append(unowned)
            return true
        }
        if accepted {
            wakeup.signal()
        } else {
            globalConcurrentExecutor.enqueue(unowned)
        }
    }

    /// Lets the threads exit once the queue is empty. Jobs enqueued afterwards run on the global
    /// executor.
    func stop() {
        state.withLock { $0.stopping = true }
        for _ in 0..<threadCount { wakeup.signal() }
    }

    private func loop() {
        let executor = asUnownedTaskExecutor()
        while true {
            wakeup.wait()
            enum Next { case run(UnownedJob), idle, exit }
            let next = state.withLock { state -> Next in
                if state.head < state.jobs.count {
                    let job = state.jobs[state.head]
                    state.head += 1
                    if state.head == state.jobs.count {
                        state.jobs.removeAll(keepingCapacity: true)
                        state.head = 0
                    }
                    return .run(job)
                }
                guard state.stopping else { return .idle }
                state.running -= 1
                return .exit
            }
            switch next {
            case .run(let job): job.runSynchronously(on: executor)
            case .idle: continue
            case .exit: return
            }
        }
    }
}

import Foundation
import NBDCore
import Synchronization

/// A fixed set of transfer threads, each owning one ``CurlHandle`` (one HTTP connection kept
/// alive), that serve the requests of every client connection in arrival order.
///
/// A request suspends its task (``perform(_:)``) until a transfer thread has done it: no
/// cooperative-pool thread ever waits in `curl_easy_perform`. The threads block in libcurl,
/// which is what they are for; their number is `connections=`, so the web server sees at most
/// that many connections, as with nbdkit 1.34's pool.
package final class CurlTransferPool: Sendable {
    /// A request for whichever transfer thread is free next.
    typealias Job = @Sendable (Result<CurlHandle, NBDError>) -> Void

    private struct Queue {
        var jobs: [Job] = []
        var head = 0
        var isStopping = false
    }

    /// What the threads share with the pool (a class, so that closures can capture the lock).
    private final class Shared: Sendable {
        let queue = LockedValue(Queue())
        /// Signalled once per job queued, and once per thread when stopping.
        let available = DispatchSemaphore(value: 0)
        /// Signalled by each thread as it ends.
        let finished = DispatchSemaphore(value: 0)
        /// The client connections using the pool (backends opened and not yet closed).
        let clients = Atomic<Int>(0)

        /// Whether a transfer thread resumes a request's task itself, so that the server writes
        /// the reply from this thread instead of handing the task to its executor's pool: only
        /// while one client connection is served. Writing a reply may block until the client
        /// reads; with one client that stalls nobody else, with several a client that stops
        /// reading would hold a transfer that the others need.
        var resumesInline: Bool { clients.load(ordering: .relaxed) <= 1 }
    }

    private let shared = Shared()
    private let threadCount: Int

    /// Starts `count` transfer threads; each makes its handle from `makeHandle` when it starts
    /// (a handle that cannot be made fails the jobs that thread takes).
    init(count: Int, makeHandle: @escaping @Sendable () throws(NBDError) -> CurlHandle) {
        threadCount = count
        for index in 0..<count {
            let thread = Thread { [shared] in
                // The handle ends (writing its cookie jar) before `finished` is signalled.
                do {
                    let handle: Result<CurlHandle, NBDError> = Result { () throws(NBDError) in try makeHandle() }
                    while let job = Self.next(shared) {
                        if shared.resumesInline {
                            InlineResumption.withScope { job(handle) }
                        } else {
                            job(handle)
                        }
                    }
                }
                shared.finished.signal()
            }
            thread.name = "curl transfer \(index)"
            thread.start()
        }
    }

    /// Counts a client connection that uses the pool, until ``clientClosed()``.
    func clientOpened() {
        shared.clients.add(1, ordering: .relaxed)
    }

    /// Ends the count of ``clientOpened()``.
    func clientClosed() {
        shared.clients.subtract(1, ordering: .relaxed)
    }

    /// Whether the transfer threads resume requests themselves (at most one client connection).
    package var resumesInline: Bool { shared.resumesInline }

    /// Waits for a job; `nil` when the pool stops and none is left.
    private static func next(_ shared: Shared) -> Job? {
        shared.available.wait()
        return shared.queue.withLock { queue in
            guard queue.head < queue.jobs.count else { return nil }
            let job = queue.jobs[queue.head]
            queue.head += 1
            if queue.head == queue.jobs.count {
                queue.jobs.removeAll(keepingCapacity: true)
                queue.head = 0
            }
            return job
        }
    }

    /// Runs `body` on the next free transfer thread with its handle and returns its result,
    /// suspending the calling task meanwhile.
    func perform<T: Sendable>(_ body: @escaping @Sendable (CurlHandle) throws(NBDError) -> T) async throws(NBDError)
        -> T
    {
        let result: Result<T, NBDError> = await withUnsafeContinuation { continuation in
            let accepted = shared.queue.withLock { queue in
                guard !queue.isStopping else { return false }
                queue.jobs.append { handle in
                    continuation.resume(
                        returning: handle.flatMap { (handle) -> Result<T, NBDError> in
                            Result { () throws(NBDError) in try body(handle) }
                        })
                }
                return true
            }
            if accepted {
                shared.available.signal()
            } else {
                continuation.resume(returning: .failure(NBDError(.shutdown, "curl: the backend is shutting down")))
            }
        }
        return try result.get()
    }

    /// Lets the threads finish the requests already queued, then ends them and waits for them
    /// (each frees its handle, writing a cookie jar). The wait happens on a thread of its own.
    func stop() async {
        guard requestStop() else { return }
        let finished = shared.finished
        let threadCount = self.threadCount
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            Thread {
                for _ in 0..<threadCount { finished.wait() }
                continuation.resume()
            }.start()
        }
    }

    /// Marks the pool stopping and wakes every thread; `false` when it was already stopping.
    private func requestStop() -> Bool {
        let wasStopping = shared.queue.withLock { queue in
            let was = queue.isStopping
            queue.isStopping = true
            return was
        }
        guard !wasStopping else { return false }
        // One wake-up per thread with no job behind it: each finds the queue empty and leaves.
        for _ in 0..<threadCount { shared.available.signal() }
        return true
    }

    deinit {
        // A provider dropped without shutdown() still ends its threads (without waiting).
        _ = requestStop()
    }
}

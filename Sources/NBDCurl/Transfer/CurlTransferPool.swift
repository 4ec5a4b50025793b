import CCurlShim
import Foundation
import NBDCore
import Synchronization

/// The transfers of every client connection: `connections=` libcurl easy handles (a free list)
/// driven together by one thread through a libcurl multi handle (`curl_multi_perform` and
/// `curl_multi_poll`), which keeps their HTTP connections alive between requests.
///
/// A request suspends its task (``perform(_:)``) and is queued; the loop thread starts it on a
/// free handle, waits for the responses of all running transfers at once, and resumes each
/// request's task when its transfer is done. No thread of the server's ever waits in libcurl,
/// and only one thread waits for the web server however many transfers run: with one transfer
/// thread per handle, every transfer cost its own thread a sleep and a wake-up per request, and
/// those threads competed for the cores with the client, the web server and each other
/// (Documentation/Curl.md, "Threads"). The web server sees at most `connections=` connections
/// (`CURLMOPT_MAX_TOTAL_CONNECTIONS`, and never more transfers at once than handles), as with
/// nbdkit 1.34's pool.
package final class CurlTransferPool: Sendable {
    /// A request for the next free handle, run on the loop thread: it sets the handle up and
    /// returns what to call with libcurl's result once the transfer is done, or `nil` when it
    /// needed no transfer (or could not be set up, and has already failed its request). With
    /// `nil` for the handle it fails its request with the error.
    typealias Job = @Sendable (CurlHandle?, NBDError?) -> Completion?

    /// What to do with libcurl's result once a transfer is done, and whether it may run inside the
    /// loop thread's inline-resumption scope.
    struct Completion {
        let finish: (Int32) -> Void
        /// How many bytes the request moves (see ``inlineResumptionLimit``).
        let bytes: Int
    }

    /// The largest request whose task the loop thread resumes itself: a small reply is written at
    /// once (several together), but a large one may wait for the client to read it, and every
    /// other transfer would wait with it; a hand-off costs little next to copying a megabyte.
    static let inlineResumptionLimit = 256 << 10

    private struct Queue {
        var jobs: [Job] = []
        var isStopping = false
        /// The loop thread is in (or about to enter) `curl_multi_poll` with no job queued: a new
        /// job must wake it.
        var isSleeping = false
    }

    /// What the loop thread shares with the pool (a class, so that closures can capture it).
    private final class Shared: Sendable {
        let queue = LockedValue(Queue())
        let curl: LibCurl
        /// The multi handle, made before the thread starts and cleaned up by it when it ends.
        nonisolated(unsafe) let multi: UnsafeMutableRawPointer
        /// Signalled by the loop thread as it ends.
        let finished = DispatchSemaphore(value: 0)
        /// The client connections using the pool (backends opened and not yet closed).
        let clients = Atomic<Int>(0)
        /// The handles that are in a running transfer, and the most there ever were at once.
        let busyHandles = Atomic<Int>(0)
        let mostBusyHandles = Atomic<Int>(0)

        init(curl: LibCurl) throws(NBDError) {
            guard let multi = curl.multiInit() else { throw NBDError(.outOfMemory, "curl: curl_multi_init failed") }
            self.curl = curl
            self.multi = multi
        }

        /// Whether the loop thread resumes a request's task itself, so that the server writes
        /// the reply from this thread instead of handing the task to its executor's pool: only
        /// while one client connection is served. Writing a reply may block until the client
        /// reads; with one client that stalls nobody else, with several a client that stops
        /// reading would hold up the transfers that the others need.
        var resumesInline: Bool { clients.load(ordering: .relaxed) <= 1 }

        /// Wakes the loop thread from `curl_multi_poll`. Called with the queue's lock held, so the
        /// thread cannot end (and clean the multi handle up) in between.
        func wake(_ queue: inout Queue) {
            guard queue.isSleeping else { return }
            queue.isSleeping = false
            _ = curl.multiWakeup(multi)
        }
    }

    /// A transfer in progress on the loop thread.
    private struct Running {
        let handle: CurlHandle
        let completion: Completion
    }

    private let shared: Shared

    /// Starts the loop thread, which makes `count` handles with `makeHandle` (a handle that
    /// cannot be made fails every request with that error).
    ///
    /// - Throws: `NBDError` when libcurl cannot make a multi handle.
    init(count: Int, curl: LibCurl, makeHandle: @escaping @Sendable () throws(NBDError) -> CurlHandle)
        throws(NBDError)
    {
        let shared = try Shared(curl: curl)
        self.shared = shared
        let thread = Thread {
            // Named from the thread itself (Foundation's Thread.name does not reach the kernel
            // here), so that `top -H`, perf and the tests can tell it apart.
            ccurl_name_current_thread("curl transfers")
            Self.loop(shared, count: count, makeHandle: makeHandle)
            shared.finished.signal()
        }
        thread.start()
    }

    /// Counts a client connection that uses the pool, until ``clientClosed()``.
    func clientOpened() {
        shared.clients.add(1, ordering: .relaxed)
    }

    /// Ends the count of ``clientOpened()``.
    func clientClosed() {
        shared.clients.subtract(1, ordering: .relaxed)
    }

    /// Whether the loop thread resumes requests itself (at most one client connection).
    package var resumesInline: Bool { shared.resumesInline }

    /// Whether the loop thread resumes a request that moves `bytes` itself, now: while at most one
    /// client connection is served, and only up to ``inlineResumptionLimit``.
    package func resumesInline(bytes: Int) -> Bool {
        Self.resumesInline(bytes: bytes, oneClient: shared.resumesInline)
    }

    private static func resumesInline(bytes: Int, oneClient: Bool) -> Bool {
        oneClient && bytes <= inlineResumptionLimit
    }

    /// The handles in a transfer now.
    package var runningTransfers: Int { shared.busyHandles.load(ordering: .relaxed) }

    /// The most handles that were ever in a transfer at once (at most `connections=`).
    package var mostConcurrentTransfers: Int { shared.mostBusyHandles.load(ordering: .relaxed) }

    /// Performs a request on the next free handle: `start` sets the handle up (on the loop
    /// thread) and returns the request's second half, which checks the response once the
    /// transfer is done. Suspends the calling task meanwhile. `bytes` is how much the request
    /// moves (see ``inlineResumptionLimit``).
    func perform<T: Sendable>(
        bytes: Int = 0, _ start: @escaping @Sendable (CurlHandle) throws(NBDError) -> CurlHandle.Finish<T>
    ) async throws(NBDError) -> T {
        let result: Result<T, NBDError> = await withUnsafeContinuation { continuation in
            enqueue(continuation) { (handle) -> Completion? in
                let finish: CurlHandle.Finish<T>
                switch Result(catching: { () throws(NBDError) in try start(handle) }) {
                case .success(let second): finish = second
                case .failure(let error):
                    continuation.resume(returning: .failure(error))
                    return nil
                }
                let resume: (Int32) -> Void = { code in
                    continuation.resume(returning: Result { () throws(NBDError) in try finish(code) })
                }
                return Completion(finish: resume, bytes: bytes)
            }
        }
        return try result.get()
    }

    /// Runs `body` with the next free handle on the loop thread, with no transfer (settings and
    /// state that tests look at).
    func withHandle<T: Sendable>(_ body: @escaping @Sendable (CurlHandle) throws(NBDError) -> T) async throws(NBDError)
        -> T
    {
        let result: Result<T, NBDError> = await withUnsafeContinuation { continuation in
            enqueue(continuation) { (handle) -> Completion? in
                continuation.resume(returning: Result { () throws(NBDError) in try body(handle) })
                return nil
            }
        }
        return try result.get()
    }

    /// Queues a job that, given a handle, runs `start`; fails `continuation` when the pool is
    /// stopping or has no handles.
    private func enqueue<T>(
        _ continuation: UnsafeContinuation<Result<T, NBDError>, Never>,
        _ start: @escaping @Sendable (CurlHandle) -> Completion?
    ) {
        let job: Job = { handle, error in
            guard let handle else {
                continuation.resume(returning: .failure(error ?? NBDError(.ioError, "curl: no transfer")))
                return nil
            }
            return start(handle)
        }
        let accepted = shared.queue.withLock { queue in
            guard !queue.isStopping else { return false }
            queue.jobs.append(job)
            shared.wake(&queue)
            return true
        }
        if !accepted {
            continuation.resume(returning: .failure(NBDError(.shutdown, "curl: the backend is shutting down")))
        }
    }

    /// The loop thread: starts queued requests on free handles, drives the running transfers,
    /// finishes the completed ones, and sleeps in `curl_multi_poll` when there is nothing to do.
    private static func loop(
        _ shared: Shared, count: Int, makeHandle: @Sendable () throws(NBDError) -> CurlHandle
    ) {
        let curl = shared.curl
        let multi = shared.multi
        // CURLMOPT_MAX_TOTAL_CONNECTIONS (a long option, 13): never more connections than handles,
        // even while a connection the server closed is being replaced. CURLMOPT_MAXCONNECTS (6):
        // keep that many idle in the cache, whose default size follows the handles added at the
        // moment, so that a quiet spell does not close connections a burst then reopens.
        _ = curl.multiSetopt(multi, 13, long: count)
        _ = curl.multiSetopt(multi, 6, long: count)
        var free: [CurlHandle] = []
        var failure: NBDError?
        do {
            for _ in 0..<count { free.append(try makeHandle()) }
        } catch {
            failure = error
            free.removeAll()
        }
        var queued: [Job] = []
        var queuedHead = 0
        var incoming: [Job] = []
        var running: [UInt: Running] = [:]
        var finished: [(Running, Int32)] = []
        var stillRunning: Int32 = 0
        while true {
            let isStopping = shared.queue.withLock { queue in
                swap(&incoming, &queue.jobs)
                return queue.isStopping
            }
            if !incoming.isEmpty {
                if queuedHead == queued.count {
                    queued.removeAll(keepingCapacity: true)
                    queuedHead = 0
                }
                queued.append(contentsOf: incoming)
                incoming.removeAll(keepingCapacity: true)
            }
            if let failure {
                while queuedHead < queued.count {
                    _ = queued[queuedHead](nil, failure)
                    queuedHead += 1
                }
            }
            // Start what the free handles allow, in arrival order.
            while queuedHead < queued.count, let handle = free.popLast() {
                let job = queued[queuedHead]
                queuedHead += 1
                guard let completion = job(handle, nil) else {
                    free.append(handle)
                    continue
                }
                if curl.multiAddHandle(multi, handle.easyHandle) == 0 {
                    running[UInt(bitPattern: handle.easyHandle)] = Running(handle: handle, completion: completion)
                    let busy = shared.busyHandles.add(1, ordering: .relaxed).newValue
                    shared.mostBusyHandles.max(busy, ordering: .relaxed)
                } else {
                    free.append(handle)
                    // CURLE_OUT_OF_MEMORY: curl_multi_add_handle fails only when it cannot allocate.
                    completion.finish(27)
                }
            }
            if isStopping && running.isEmpty && queuedHead == queued.count { break }

            if !running.isEmpty {
                _ = curl.multiPerform(multi, &stillRunning)
                var left: Int32 = 0
                while let message = curl.multiInfoRead(multi, &left) {
                    // CURLMSG_DONE is the only message libcurl sends.
                    guard message.pointee.msg == 1, let easy = message.pointee.easy_handle else { continue }
                    let code = ccurl_multi_message_result(message)
                    guard let done = running.removeValue(forKey: UInt(bitPattern: easy)) else { continue }
                    _ = curl.multiRemoveHandle(multi, easy)
                    shared.busyHandles.subtract(1, ordering: .relaxed)
                    free.append(done.handle)
                    finished.append((done, code))
                }
            }
            if !finished.isEmpty {
                // The requests are resumed after libcurl is done with the messages (a resumed task
                // may queue another request). While one client is served the small ones run here,
                // and their replies leave together when the scope ends; the others go to the
                // server's pool.
                let oneClient = shared.resumesInline
                var inline = 0
                for (done, code) in finished {
                    if Self.resumesInline(bytes: done.completion.bytes, oneClient: oneClient) {
                        inline += 1
                    } else {
                        done.completion.finish(code)
                    }
                }
                if inline > 0 {
                    InlineResumption.withScope {
                        for (done, code) in finished
                        where Self.resumesInline(bytes: done.completion.bytes, oneClient: oneClient) {
                            done.completion.finish(code)
                        }
                    }
                }
                finished.removeAll(keepingCapacity: true)
                // A handle came free: start what is queued before sleeping.
                continue
            }
            let maySleep = shared.queue.withLock { queue in
                guard queue.jobs.isEmpty && !queue.isStopping else { return false }
                queue.isSleeping = true
                return true
            }
            guard maySleep else { continue }
            // Woken by a response, libcurl's own timers (timeouts), or curl_multi_wakeup for a new
            // job or a stop; the one-second bound is only a safety net.
            var events: Int32 = 0
            _ = curl.multiPoll(multi, nil, 0, 1000, &events)
            shared.queue.withLock { $0.isSleeping = false }
        }
        // The handles end (writing their cookie jars) before the multi handle they were used in.
        free.removeAll()
        _ = curl.multiCleanup(multi)
    }

    /// Lets the loop finish the requests already queued, then ends it and waits for it (it frees
    /// the handles, writing a cookie jar). The wait happens on a thread of its own.
    func stop() async {
        guard requestStop() else { return }
        let finished = shared.finished
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            Thread {
                finished.wait()
                continuation.resume()
            }.start()
        }
    }

    /// Marks the pool stopping and wakes the loop; `false` when it was already stopping.
    private func requestStop() -> Bool {
        shared.queue.withLock { queue in
            let was = queue.isStopping
            queue.isStopping = true
            shared.wake(&queue)
            return !was
        }
    }

    deinit {
        // A provider dropped without shutdown() still ends its loop (without waiting).
        _ = requestStop()
    }
}

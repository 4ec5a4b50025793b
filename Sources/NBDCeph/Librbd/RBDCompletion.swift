#if canImport(Glibc)
    import Glibc
#endif

/// Awaits one librbd asynchronous call: the call gets a completion whose callback, run on one of
/// librbd's threads when Ceph answers, resumes the waiting task. No thread waits meanwhile.
enum RBDCompletion {
    /// What the callback needs: the task to resume and the library to read the result with. It is
    /// retained for the callback (passed as librbd's callback argument) and released by it.
    private final class Waiter {
        let continuation: UnsafeContinuation<Int, Never>
        let library: Librbd

        init(_ continuation: UnsafeContinuation<Int, Never>, _ library: Librbd) {
            self.continuation = continuation
            self.library = library
        }
    }

    /// Starts an operation with `submit` (given the completion to pass to librbd) and returns its
    /// result: librbd's return value, a negative errno on failure. The caller's buffers must stay
    /// valid until this returns, which is after librbd is done with them.
    static func run(_ library: Librbd, _ submit: (Librbd.Handle) -> Int32) async -> Int {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Int, Never>) in
            let waiter = Unmanaged.passRetained(Waiter(continuation, library))
            var completion: Librbd.Handle?
            let created = library.aioCreateCompletion(waiter.toOpaque(), callback, &completion)
            guard created == 0, let completion else {
                waiter.release()
                continuation.resume(returning: created < 0 ? Int(created) : -Int(ENOMEM))
                return
            }
            let submitted = submit(completion)
            if submitted < 0 {
                // librbd refused the request before queueing it: the callback will not run.
                library.aioRelease(completion)
                waiter.release()
                continuation.resume(returning: Int(submitted))
            }
        }
    }

    /// librbd's completion callback: reads the result, releases the completion, resumes the task
    /// (which continues on its executor, not on librbd's thread).
    private static let callback: Librbd.Callback = { completion, argument in
        guard let completion, let argument else { return }
        let waiter = Unmanaged<Waiter>.fromOpaque(argument).takeRetainedValue()
        let result = waiter.library.aioGetReturnValue(completion)
        waiter.library.aioRelease(completion)
        waiter.continuation.resume(returning: result)
    }
}

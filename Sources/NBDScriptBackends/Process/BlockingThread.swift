import Dispatch
import Glibc

/// Runs blocking work (a script from start to exit) on a thread of its own and suspends the caller
/// until it is done, so that neither the cooperative pool nor a connection's thread waits for a
/// process. One short-lived thread per call: starting a process costs far more than a thread.
enum BlockingThread {
    private final class Work {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Runs `work` on a new thread and returns its result.
    static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<T, Never>) in
            let box = Unmanaged.passRetained(Work { continuation.resume(returning: work()) })
            var attributes = pthread_attr_t()
            pthread_attr_init(&attributes)
            pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
            var thread = pthread_t()
            let result = pthread_create(
                &thread, &attributes,
                { raw in
                    Unmanaged<Work>.fromOpaque(raw!).takeRetainedValue().body()
                    return nil
                }, box.toOpaque())
            pthread_attr_destroy(&attributes)
            if result != 0 {
                // Out of threads for now: a Dispatch worker still keeps the cooperative pool free.
                let work = box.takeRetainedValue()
                nonisolated(unsafe) let unsafeWork = work
                DispatchQueue.global().async { unsafeWork.body() }
            }
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// Starts detached POSIX threads. The server gives every connection, every listener and the slow
/// operation pool threads of their own, so that blocking `recv`, `send` and `accept` never occupy the
/// cooperative pool (which has only as many threads as cores).
package enum ThreadStarter {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Runs `body` on a new detached thread. Returns `false` if the thread could not be created.
    /// `name` is for diagnostics (Glibc's `pthread_setname_np` is not exported to Swift).
    @discardableResult
    package static func start(name: String, _ body: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let result = pthread_create(
            &thread, &attributes,
            { context in
                let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
                box.body()
                return nil
            }, box)
        if result != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            return false
        }
        return true
    }
}

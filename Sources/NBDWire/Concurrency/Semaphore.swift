#if canImport(Glibc)
    import Glibc
#endif

/// A counting semaphore on a POSIX `sem_t`: the one primitive a blocking thread waits on.
///
/// Only threads of their own wait on it (the server's connection and pool threads, the `nbd`
/// backend's forwarding threads), never cooperative-pool threads.
package final class Semaphore: @unchecked Sendable {
    // @unchecked Sendable: sem_t is designed for concurrent use; the pointer never changes.
    private let handle: UnsafeMutablePointer<sem_t>

    package init(value: UInt32 = 0) {
        handle = .allocate(capacity: 1)
        sem_init(handle, 0, value)
    }

    deinit {
        sem_destroy(handle)
        handle.deallocate()
    }

    package func signal() {
        sem_post(handle)
    }

    package func wait() {
        while sem_wait(handle) != 0 && errno == EINTR {}
    }

    /// Takes one count if available without waiting.
    package func tryWait() -> Bool {
        sem_trywait(handle) == 0
    }
}

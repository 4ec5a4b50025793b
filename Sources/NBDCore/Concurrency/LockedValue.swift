import Synchronization

#if NBD_PTHREAD_LOCKS
    #if canImport(Glibc)
        import Glibc
    #elseif canImport(Darwin)
        import Darwin
    #endif

    /// The lock every target of this package uses, in the thread-sanitizer build: a `pthread_mutex_t`
    /// guarding a value, with the same `init(_:)` and `withLock(_:)` as `Synchronization.Mutex`.
    ///
    /// Why it exists: on Linux `Mutex` hands the lock from one thread to the next through a futex,
    /// which ThreadSanitizer does not intercept. TSan then sees no happens-before edge between one
    /// thread's unlock and the next thread's lock and reports "Swift access race" on state that is
    /// only ever touched inside `withLock` bodies of the same mutex. `pthread_mutex_lock`/`unlock`
    /// are intercepted, so with this type the hand-off is visible and only real races are reported.
    ///
    /// Only built with `-Xswiftc -DNBD_PTHREAD_LOCKS` (see Documentation/Reliability.md); normal
    /// builds use `Mutex` itself (the typealias below), so production code is unchanged.
    package final class LockedValue<Value: ~Copyable>: @unchecked Sendable {
        // @unchecked Sendable: `value` is only read or written between pthread_mutex_lock and
        // pthread_mutex_unlock on `mutex`, which never changes after init.
        private let mutex: UnsafeMutablePointer<pthread_mutex_t>
        private var value: Value

        package init(_ initialValue: consuming sending Value) {
            mutex = .allocate(capacity: 1)
            mutex.initialize(to: pthread_mutex_t())
            let result = pthread_mutex_init(mutex, nil)
            precondition(result == 0, "pthread_mutex_init failed: \(result)")
            value = initialValue
        }

        deinit {
            pthread_mutex_destroy(mutex)
            mutex.deinitialize(count: 1)
            mutex.deallocate()
        }

        /// Runs `body` with exclusive access to the value, like `Mutex.withLock`.
        package func withLock<Result: ~Copyable, E: Error>(
            _ body: (inout sending Value) throws(E) -> sending Result
        ) throws(E) -> sending Result {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return try body(&value)
        }
    }
#else
    /// The lock every target of this package uses: `Synchronization.Mutex` itself.
    ///
    /// Compiled with `-Xswiftc -DNBD_PTHREAD_LOCKS` this is instead a class on `pthread_mutex_t`
    /// with the same interface, because ThreadSanitizer cannot see `Mutex`'s futex hand-off on Linux
    /// and reports false races (see Documentation/Reliability.md). Normal builds are unaffected.
    package typealias LockedValue<Value: ~Copyable> = Mutex<Value>
#endif

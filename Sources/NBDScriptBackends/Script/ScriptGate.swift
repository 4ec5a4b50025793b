import NBDCore
import Synchronization

/// A lock held around a whole script run, on the run's own thread, to serialise calls as the
/// thread model asks. Waiting here blocks only that thread, never a connection's or the pool's.
package final class ScriptGate: Sendable {
    /// How many runs went through, guarded by the lock. (A lock around `Void` has no storage for
    /// ThreadSanitizer's access tracking to tell apart from the object header: it reports a false
    /// race there.)
    private let runs = LockedValue<UInt64>(0)

    package init() {}

    /// Runs `body` while no other run through this gate is running.
    func run<T>(_ body: () -> T) -> T {
        runs.withLock { count in
            count &+= 1
            return body()
        }
    }
}

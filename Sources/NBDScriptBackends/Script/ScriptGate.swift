import NBDCore
import Synchronization

/// A lock held around a whole script run, on the run's own thread, to serialise calls as the
/// thread model asks. Waiting here blocks only that thread, never a connection's or the pool's.
package final class ScriptGate: Sendable {
    private let lock = LockedValue<Void>(())

    package init() {}

    /// Runs `body` while no other run through this gate is running.
    func run<T>(_ body: () -> T) -> T {
        lock.withLock { _ in body() }
    }
}

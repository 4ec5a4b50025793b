import Dispatch

/// Runs librados/librbd calls that block (connecting to the monitors, opening and closing an
/// image: several round trips, bounded by the client timeouts) on a Dispatch thread, so that they
/// never hold one of the cooperative pool's few threads.
enum BlockingCall {
    /// Runs `work` on a global Dispatch queue and returns its result.
    static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withUnsafeContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: work()) }
        }
    }
}

/// A librados/librbd handle carried out of a ``BlockingCall`` (C handles are not `Sendable`; the
/// handles are, as librbd's are safe to use from any thread).
struct SendableHandle: @unchecked Sendable {
    let handle: Librbd.Handle?
}

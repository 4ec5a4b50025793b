import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a handler when the process receives one of a set of signals, such as `SIGTERM` from a
/// service manager or `SIGINT` from Ctrl-C: the usual way to stop an ``NBDServer`` embedded in a
/// program (see ``NBDServer/shutdownOnSignals(_:)``).
///
/// The handler runs on a thread of the package's own, outside every actor, so it may do anything
/// (not only what is async-signal-safe). This matters in Swift 6: a Dispatch signal source set up in
/// a top-level `main.swift` takes its handler as main-actor code, which traps in
/// `dispatch_assert_queue` when the signal arrives on another queue.
///
/// While a signal is handled, its default action (ending the process) does not happen: the
/// handler decides. ``cancel()`` gives the signal back the action it had before. Several handlers
/// may handle one signal; each is called. Keep the value alive for as long as the signals should
/// be handled: releasing it cancels it.
///
/// ```swift
/// let signals = SignalHandler([SIGINT, SIGTERM]) { number in print("stopping on signal \(number)") }
/// ```
public final class SignalHandler: Sendable {
    /// `SIGINT` and `SIGTERM`: Ctrl-C, and what service managers and libnbd's tools send to stop
    /// a server.
    public static let stopSignals: [Int32] = [SIGINT, SIGTERM]

    /// Each signal's registration with the dispatcher, until cancelled.
    private let registrations: LockedValue<[(number: Int32, id: UInt64)]>

    /// Starts handling `signals`: each time one arrives, `handler` is called with its number. A
    /// signal whose handler cannot be installed (the process is out of file descriptors or
    /// threads) is left as it was.
    public init(_ signals: [Int32] = SignalHandler.stopSignals, handler: @escaping @Sendable (Int32) -> Void) {
        registrations = LockedValue(
            signals.compactMap { number in
                SignalDispatcher.register(number, handler: handler).map { (number, $0) }
            })
    }

    /// Stops handling the signals and gives each the action it had before (unless another
    /// handler still handles it). Calling it again does nothing.
    public func cancel() {
        let cancelled = registrations.withLock { registrations -> [(number: Int32, id: UInt64)] in
            defer { registrations = [] }
            return registrations
        }
        for registration in cancelled { SignalDispatcher.unregister(registration.number, id: registration.id) }
    }

    deinit {
        cancel()
    }
}
extension NBDServer {
    /// Shuts the server down gracefully (``shutdown()``) when the process receives one of `signals`
    /// (by default `SIGINT` and `SIGTERM`), so that ``run()`` returns and the program can finish.
    /// Keep the returned handler alive until then.
    ///
    /// ```swift
    /// let server = NBDServer(provider: export)
    /// try server.listen(on: .unix(path: "/tmp/nbd.sock"))
    /// let signals = server.shutdownOnSignals()
    /// await server.run()   // returns after SIGINT or SIGTERM
    /// signals.cancel()
    /// ```
    public func shutdownOnSignals(_ signals: [Int32] = SignalHandler.stopSignals) -> SignalHandler {
        SignalHandler(signals) { [self] _ in
            Task { await self.shutdown() }
        }
    }
}

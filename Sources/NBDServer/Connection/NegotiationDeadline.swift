import NBDCore
import Synchronization

/// The whole-handshake limit of one connection (``ServerConfiguration/negotiationTimeout``): when it
/// passes before ``finish()``, the socket is shut down, which ends any receive or TLS handshake under
/// way with end of stream, so the handshake returns and the connection closes.
///
/// Exactly one of the two wins: ``finish()`` after expiry returns `false`, and an expiry after
/// ``finish()`` does nothing, so a connection that finished in time is never cut.
package final class NegotiationDeadline: Sendable {
    private static let negotiating = 0
    private static let finished = 1
    private static let expired = 2

    private let state = Atomic<Int>(NegotiationDeadline.negotiating)
    private let timer = LockedValue<Task<Void, Never>?>(nil)

    /// Starts the clock: after `limit`, unless finished, calls `onExpiry` (which shuts the socket
    /// down).
    package init(after limit: Duration, onExpiry: @escaping @Sendable () -> Void) {
        let task = Task.detached { [self] in
            do {
                try await Task.sleep(for: limit)
            } catch {
                return  // finished in time: cancelled
            }
            guard expire() else { return }
            onExpiry()
        }
        timer.withLock { $0 = task }
    }

    /// Claims the connection for the deadline; `false` when the handshake finished first.
    package func expire() -> Bool {
        state.compareExchange(expected: Self.negotiating, desired: Self.expired, ordering: .acquiringAndReleasing)
            .exchanged
    }

    /// Marks the handshake finished and stops the clock. Returns `false` when the deadline had
    /// already passed (the socket is shut down; the connection must end).
    package func finish() -> Bool {
        let won = state.compareExchange(
            expected: Self.negotiating, desired: Self.finished, ordering: .acquiringAndReleasing
        ).exchanged
        timer.withLock { $0?.cancel() }
        return won
    }
}

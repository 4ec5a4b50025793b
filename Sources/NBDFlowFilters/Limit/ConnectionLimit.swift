import NBDCore
import Synchronization

/// The count of open connections the limit filter enforces, shared by every connection of an
/// export.
///
/// ```swift
/// let limit = ConnectionLimit(2)
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in try LimitFilter(wrapping: next, limit: limit) }
/// ```
public final class ConnectionLimit: Sendable {
    /// How many connections may be open at once; 0 means no limit.
    public let limit: Int
    private let open = Atomic<Int>(0)

    /// Creates a limit of `limit` connections at once (0: unlimited).
    public init(_ limit: Int) {
        self.limit = max(0, limit)
    }

    /// The connections admitted and not yet released.
    public var openConnections: Int { open.load(ordering: .relaxed) }

    /// Counts one more connection, or throws `EPERM` when ``limit`` are already open.
    ///
    /// `EPERM` makes the server answer the client's `NBD_OPT_GO` with `NBD_REP_ERR_POLICY` and the
    /// message, and tell the operator which connection was refused and why.
    public func admit() throws(NBDError) {
        var current = open.load(ordering: .relaxed)
        while true {
            if limit > 0 && current >= limit {
                throw NBDError(
                    .notPermitted,
                    "limit: too many clients connected (\(current) of limit=\(limit)), connection rejected")
            }
            let (exchanged, original) = open.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return }
            current = original
        }
    }

    /// Releases a connection counted by ``admit()``.
    public func release() {
        open.wrappingSubtract(1, ordering: .acquiringAndReleasing)
    }
}

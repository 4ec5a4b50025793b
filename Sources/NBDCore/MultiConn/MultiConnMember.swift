import Synchronization

/// One connection's membership in a multi-conn group: its dirty bits, read and written without
/// locks on the request path, and a way to flush the layer below it from another connection.
@usableFromInline
final class MultiConnMember: Sendable {
    /// The connection wrote since its last flush.
    @usableFromInline static let wrote: UInt8 = 1
    /// The connection read (so may hold cached data) since its last flush.
    @usableFromInline static let read: UInt8 = 2
    /// The connection read, and since then another connection made data durable: its cache may be stale.
    @usableFromInline static let stale: UInt8 = 4

    @usableFromInline let id: UInt64
    @usableFromInline let dirty = Atomic<UInt8>(0)
    /// Flushes currently running on this connection's own behalf (see ``MultiConnFilter``).
    @usableFromInline let flushesInFlight = Atomic<Int>(0)
    let flushNext: @Sendable () async throws(NBDError) -> Void
    /// Requests that entered this connection's filter, and those that left it (emulate mode only):
    /// a fan-out compares them to learn whether the connection was used while it ran.
    @usableFromInline let requestsStarted = Atomic<UInt64>(0)
    @usableFromInline let requestsFinished = Atomic<UInt64>(0)

    init(id: UInt64, flushNext: @escaping @Sendable () async throws(NBDError) -> Void) {
        self.id = id
        self.flushNext = flushNext
    }

    /// Sets `bits`, skipping the write when they are already set so that busy connections do not
    /// bounce the cache line between cores.
    @inlinable
    func mark(_ bits: UInt8) {
        if dirty.load(ordering: .relaxed) & bits != bits {
            dirty.bitwiseOr(bits, ordering: .sequentiallyConsistent)
        }
    }
}

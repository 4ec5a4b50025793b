import Synchronization

/// The connections whose flushes are copied to each other: every connection, or those that asked
/// for one export name.
@usableFromInline
final class MultiConnGroup: Sendable {
    /// The key the group was created under: `nil` for the single group of all connections.
    let exportName: String?
    /// Some member wrote since the group's last flush.
    @usableFromInline let dirty = Atomic<Bool>(false)
    /// Flushes currently running on this group's behalf, so that a flush that finds the group clean
    /// does not reply before a flush already under way finished making earlier writes durable.
    @usableFromInline let flushesInFlight = Atomic<Int>(0)
    /// Members in arrival order. Changed only by the ``MultiConn`` actor; read by anyone.
    let members = LockedValue<[MultiConnMember]>([])

    init(exportName: String?) {
        self.exportName = exportName
    }

    @inlinable
    func markDirty() {
        if !dirty.load(ordering: .relaxed) {
            dirty.store(true, ordering: .sequentiallyConsistent)
        }
    }

    /// A snapshot of the members, in arrival order.
    var memberList: [MultiConnMember] {
        members.withLock { $0 }
    }

    /// Marks every other member that holds read data as stale: data became durable elsewhere, so
    /// what it cached may be out of date.
    @usableFromInline
    func markReadersStale(except member: MultiConnMember) {
        for other in memberList where other !== member {
            if other.dirty.load(ordering: .sequentiallyConsistent) & MultiConnMember.read != 0 {
                other.mark(MultiConnMember.stale)
            }
        }
    }
}

import NBDCore
import Synchronization

/// Keeps a read-modify-write of a block from racing any other write to the same block, across every
/// connection of an export, without serializing writes to different blocks.
///
/// nbdkit's blocksize filter takes one process-wide read-write lock: every read-modify-write holds it
/// exclusively, so two of them never run at once even on blocks far apart. Here a request claims
/// only the blocks it touches: the unaligned head and tail blocks it rewrites exclusively, the aligned
/// body shared (aligned writes to the same blocks may run together, as the protocol leaves their
/// order to the client, but a read-modify-write must not read the old block, let an aligned write
/// land, and then write the old bytes back over it).
///
/// A request claims all its blocks at once or waits, so no two requests can each hold a block the
/// other needs. Waiters are granted in arrival order among those that overlap, so a stream of aligned
/// writes cannot starve a read-modify-write. An uncontended claim costs one lock round trip and does
/// not suspend.
public final class BlockRangeLock: Sendable {
    /// One run of blocks `[first, end)` a request holds, shared or exclusive.
    @usableFromInline
    struct Claim: Sendable {
        @usableFromInline var first: UInt64
        @usableFromInline var end: UInt64
        @usableFromInline var isExclusive: Bool

        @usableFromInline
        init(first: UInt64, end: UInt64, isExclusive: Bool) {
            self.first = first
            self.end = end
            self.isExclusive = isExclusive
        }

        @usableFromInline
        func conflicts(with other: Claim) -> Bool {
            (isExclusive || other.isExclusive) && first < other.end && other.first < end
        }
    }

    /// What one request holds: at most a head, a body and a tail claim (a fixed-size value, so taking
    /// the lock allocates nothing).
    public struct Claims: Sendable {
        @usableFromInline var head: Claim?
        @usableFromInline var body: Claim?
        @usableFromInline var tail: Claim?

        @usableFromInline
        init(head: Claim?, body: Claim?, tail: Claim?) {
            self.head = head
            self.body = body
            self.tail = tail
        }

        @usableFromInline
        func conflicts(with other: Claims) -> Bool {
            // Spelled out rather than looped over arrays: this runs under the lock on every write.
            conflicts(head, with: other) || conflicts(body, with: other) || conflicts(tail, with: other)
        }

        @usableFromInline
        func conflicts(_ claim: Claim?, with other: Claims) -> Bool {
            guard let claim else { return false }
            return (other.head.map { claim.conflicts(with: $0) } ?? false)
                || (other.body.map { claim.conflicts(with: $0) } ?? false)
                || (other.tail.map { claim.conflicts(with: $0) } ?? false)
        }
    }

    /// A granted claim, to hand back to `release(_:)`.
    public struct Ticket: Sendable, Hashable {
        let value: UInt64
    }

    private struct Waiter {
        var ticket: UInt64
        var claims: Claims
        var continuation: CheckedContinuation<UInt64, Never>
    }

    private struct State {
        var held: [(ticket: UInt64, claims: Claims)] = []
        var waiting: [Waiter] = []
        var nextTicket: UInt64 = 0
    }

    private let state = LockedValue(State())
    private let grantsEverything: Bool

    /// Creates a lock with nothing held.
    public init() {
        grantsEverything = false
    }

    private init(grantsEverything: Bool) {
        self.grantsEverything = grantsEverything
    }

    /// A lock that grants every claim at once: what the filter would be without it. Only for tests
    /// that must show their check finds the lost writes this lock prevents.
    package static func grantingEverything() -> BlockRangeLock {
        BlockRangeLock(grantsEverything: true)
    }

    /// Claims `claims`, waiting (suspended, not blocking a thread) while an overlapping claim that
    /// conflicts is held or waiting ahead of it.
    @usableFromInline
    func acquire(_ claims: Claims) async -> Ticket {
        if grantsEverything { return Ticket(value: 0) }
        // The common case, nothing in the way, is decided without suspending.
        if let granted = tryAcquire(claims, orEnqueue: nil) { return Ticket(value: granted) }
        let ticket = await withCheckedContinuation { (continuation: CheckedContinuation<UInt64, Never>) in
            // Checked again under the lock: a conflicting claim may have gone since the first try.
            if let granted = tryAcquire(claims, orEnqueue: continuation) {
                continuation.resume(returning: granted)
            }
        }
        return Ticket(value: ticket)
    }

    /// Grants `claims` and returns the ticket if nothing held or waiting conflicts; otherwise queues
    /// `continuation` (if given) to be resumed with the ticket once granted, and returns `nil`.
    private func tryAcquire(_ claims: Claims, orEnqueue continuation: CheckedContinuation<UInt64, Never>?) -> UInt64? {
        state.withLock { state in
            state.nextTicket += 1
            let ticket = state.nextTicket
            let blocked =
                state.held.contains { $0.claims.conflicts(with: claims) }
                || state.waiting.contains { $0.claims.conflicts(with: claims) }
            if !blocked {
                state.held.append((ticket, claims))
                return ticket
            }
            if let continuation {
                state.waiting.append(Waiter(ticket: ticket, claims: claims, continuation: continuation))
            }
            return nil
        }
    }

    /// Releases a claim and wakes every waiter that no longer conflicts with anything held or with a
    /// waiter ahead of it.
    @usableFromInline
    func release(_ ticket: Ticket) {
        if grantsEverything { return }
        let woken: [(CheckedContinuation<UInt64, Never>, UInt64)] = state.withLock { state in
            if let index = state.held.firstIndex(where: { $0.ticket == ticket.value }) {
                state.held.remove(at: index)
            }
            guard !state.waiting.isEmpty else { return [] }
            var woken: [(CheckedContinuation<UInt64, Never>, UInt64)] = []
            var stillWaiting: [Waiter] = []
            for waiter in state.waiting {
                let blocked =
                    state.held.contains { $0.claims.conflicts(with: waiter.claims) }
                    || stillWaiting.contains { $0.claims.conflicts(with: waiter.claims) }
                if blocked {
                    stillWaiting.append(waiter)
                } else {
                    state.held.append((waiter.ticket, waiter.claims))
                    woken.append((waiter.continuation, waiter.ticket))
                }
            }
            state.waiting = stillWaiting
            return woken
        }
        for (continuation, ticket) in woken { continuation.resume(returning: ticket) }
    }

    /// The number of claims held and waiting, for tests.
    package var counts: (held: Int, waiting: Int) {
        state.withLock { ($0.held.count, $0.waiting.count) }
    }
}

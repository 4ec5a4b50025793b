import Synchronization

/// What one connection holds of the server's ``PayloadBudget``: the charge of its output buffer
/// (a large inline read), of the reply still being sent (``ReplyTail``), and of its slow and
/// suspended requests, which give their charge back from whichever thread finishes them.
///
/// The no-deadlock rule lives here and in the connection loop: while a connection holds anything it
/// only takes more when that is available at once and within ``PayloadBudget/connectionShare``;
/// otherwise it first sends what it has (giving back its output's and tail's charges), and only then
/// waits in line. So a waiting connection never holds bytes that only it could give back, and a
/// client that stops reading its replies ties up at most its share (or one request).
final class ConnectionPayloadCharges: Sendable {
    let budget: PayloadBudget
    /// Everything this connection holds, inline and slow requests together.
    private let held = Atomic<Int>(0)
    /// The charge of the large read in the output buffer. Only the connection's thread touches it.
    private let output = Atomic<Int>(0)
    /// The charge of the batch ``ReplyTail`` is sending. Only the connection's thread touches it.
    private let tail = Atomic<Int>(0)

    init(budget: PayloadBudget) {
        self.budget = budget
    }

    /// What everything this connection holds comes to.
    var heldBytes: Int { held.load(ordering: .relaxed) }

    /// Takes `bytes` if the budget has them now and this connection stays within its share (or
    /// holds nothing yet). Never waits.
    func tryReserve(_ bytes: Int) -> Bool {
        if bytes == 0 { return true }
        let holding = held.load(ordering: .relaxed)
        if holding > 0 && bytes > budget.connectionShare - min(holding, budget.connectionShare) { return false }
        guard budget.tryReserve(bytes) else { return false }
        held.add(bytes, ordering: .relaxed)
        return true
    }

    /// Takes `bytes`, waiting in line. Call only once the connection's own replies are sent.
    func reserve(_ bytes: Int) {
        budget.reserve(bytes)
        held.add(bytes, ordering: .relaxed)
    }

    /// Gives back a charge taken with ``tryReserve(_:)`` or ``reserve(_:)`` (a slow request's, a
    /// large write's); any thread may call it.
    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        held.subtract(bytes, ordering: .relaxed)
        budget.release(bytes)
    }

    /// Records that the output buffer now holds a large read charged `bytes`.
    func chargeOutput(_ bytes: Int) {
        output.add(bytes, ordering: .relaxed)
    }

    /// Gives back the output buffer's charge once it was sent and shrunk.
    func releaseOutput() {
        let bytes = output.load(ordering: .relaxed)
        guard bytes > 0 else { return }
        output.store(0, ordering: .relaxed)
        release(bytes)
    }

    /// The output buffer's contents became the tail's (``ReplyTail/start(_:on:)``).
    func moveOutputToTail() {
        let bytes = output.load(ordering: .relaxed)
        guard bytes > 0 else { return }
        output.store(0, ordering: .relaxed)
        tail.add(bytes, ordering: .relaxed)
    }

    /// Gives back the tail's charge once it was sent and shrunk.
    func releaseTail() {
        let bytes = tail.load(ordering: .relaxed)
        guard bytes > 0 else { return }
        tail.store(0, ordering: .relaxed)
        release(bytes)
    }
}

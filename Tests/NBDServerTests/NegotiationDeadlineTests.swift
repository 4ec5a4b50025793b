import NBDServer
import NBDTestSupport
import Synchronization
import XCTest

/// `ServerConfiguration.negotiationTimeout`'s race: a handshake that finished is never cut, and one
/// that did not finish is cut exactly once.
final class NegotiationDeadlineTests: XCTestCase {
    func testFinishingFirstWinsAndTheDeadlineThenDoesNothing() {
        let expiries = Atomic<Int>(0)
        let deadline = NegotiationDeadline(after: .seconds(3600)) { expiries.add(1, ordering: .relaxed) }
        XCTAssertTrue(deadline.finish())
        XCTAssertFalse(deadline.expire(), "the deadline must not claim a finished handshake")
        XCTAssertEqual(expiries.load(ordering: .relaxed), 0)
    }

    func testExpiringFirstCutsOnceAndFinishReportsIt() async throws {
        let (expired, continuation) = AsyncStream.makeStream(of: Void.self)
        let deadline = NegotiationDeadline(after: .milliseconds(10)) { continuation.yield() }
        try await withBoundedWait("the deadline to pass") {
            for await _ in expired { return }
        }
        XCTAssertFalse(deadline.finish(), "finish after expiry must say the connection ends")
        XCTAssertFalse(deadline.expire())
        continuation.finish()
    }
}

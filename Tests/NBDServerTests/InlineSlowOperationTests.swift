import NBDCore
import NBDWire
import Synchronization
import XCTest

@testable import NBDServer

/// Slow operations that turn out to be fast run on the connection's own thread; slow ones, and the
/// first of each connection, run on the pool (``ServerConfiguration/inlineSlowOperationThreshold``).
final class InlineSlowOperationTests: ServerTestCase {
    typealias Client = TestNBDClient
    typealias Cmd = TestNBDClient.Cmd

    private let slowFlush = Capabilities(size: 1 << 20, slowOperations: [.flush])

    /// A client connected to a server whose flush is declared slow, and what its export records.
    private func connect(threshold: Duration?) throws -> (client: Client, state: TestExportState) {
        var configuration = ServerConfiguration()
        configuration.inlineSlowOperationThreshold = threshold
        let (_, path, state) = try startServer(capabilities: slowFlush, configuration: configuration)
        let client = try Client(unixPath: path)
        try client.connect()
        return (client, state)
    }

    /// Reads, then flushes `count` times one after the other; returns the connection's thread and the
    /// thread of every flush.
    private func flushes(_ count: Int, client: Client, state: TestExportState) throws -> (
        connection: UInt, flushes: [UInt]
    ) {
        XCTAssertEqual(try client.read(8, at: 0).0, 0)
        let before = state.flushThreads.withLock { $0.count }
        for index in 0..<count {
            let cookie = UInt64(100 + before + index)
            try client.sendRequest(type: Cmd.flush, cookie: cookie)
            let reply = try client.readSimpleReply()
            XCTAssertEqual(reply.cookie, cookie)
            XCTAssertEqual(reply.error, 0)
        }
        let connection = try XCTUnwrap(state.readThreads.withLock { $0.last })
        return (connection, state.flushThreads.withLock { Array($0[before...]) })
    }

    func testFastSlowOperationsRunInlineAfterTheFirst() throws {
        // Generous, so a sanitizer build or a busy machine cannot push a trivial flush over it.
        let (client, state) = try connect(threshold: .milliseconds(10))
        let (connection, threads) = try flushes(4, client: client, state: state)
        XCTAssertEqual(threads.count, 4)
        XCTAssertNotEqual(threads[0], connection, "the first slow request goes to the pool: nothing is known yet")
        XCTAssertEqual(Array(threads[1...]), [connection, connection, connection], "fast ones then run inline")
    }

    func testWithoutAThresholdSlowOperationsAlwaysRunOnThePool() throws {
        let (client, state) = try connect(threshold: nil)
        let (connection, threads) = try flushes(4, client: client, state: state)
        XCTAssertEqual(threads.count, 4)
        XCTAssertFalse(threads.contains(connection), "a flush ran on the connection's thread")
    }

    func testASlowCallSendsTheConnectionBackToThePool() throws {
        let (client, state) = try connect(threshold: .milliseconds(10))
        let fast = try flushes(2, client: client, state: state)
        XCTAssertEqual(fast.flushes.last, fast.connection, "inline once known to be fast")

        // One flush that keeps its thread 200 ms (inline, as predicted), which lifts the average to
        // at least 50 ms; the next one must not be trusted to the connection's thread.
        state.flushBusyTime.withLock { $0 = .milliseconds(200) }
        let slow = try flushes(2, client: client, state: state)
        XCTAssertEqual(slow.flushes[0], slow.connection, "the mispredicted call itself ran inline")
        XCTAssertNotEqual(slow.flushes[1], slow.connection, "after a slow call the pool takes over")
    }

    func testTheEstimateStartsUnknownAndFollowsTheMeasurements() {
        let estimate = SlowOperationEstimate()
        XCTAssertFalse(estimate.isBelow(.seconds(1)), "unknown counts as slow")
        estimate.record(.microseconds(2))
        XCTAssertTrue(estimate.isBelow(.microseconds(20)))
        XCTAssertFalse(estimate.isBelow(.microseconds(2)), "below means strictly below")
        estimate.record(.seconds(1))
        XCTAssertFalse(estimate.isBelow(.milliseconds(200)), "one slow sample weighs a quarter")
        for _ in 0..<60 { estimate.record(.microseconds(2)) }
        XCTAssertTrue(estimate.isBelow(.microseconds(20)), "fast again after enough fast samples")
        estimate.record(.seconds(Int64.max))
        XCTAssertFalse(estimate.isBelow(.seconds(3600)), "huge durations do not overflow")
    }
}

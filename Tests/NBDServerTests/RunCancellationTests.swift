import NBDCore
import NBDServer
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

/// `NBDServer.run()` under task cancellation: it starts a graceful shutdown and returns only when
/// that shutdown has finished, so a structured-concurrency owner that cancels it loses nothing.
final class RunCancellationTests: ServerTestCase {
    typealias Client = TestNBDClient

    func testCancellingRunShutsDownGracefullyAndReturnsOnlyWhenDrained() async throws {
        let gate = Gate()
        let slowFlush = Capabilities(size: 1 << 20, canFlush: true, slowOperations: [.flush])
        let (server, path, state) = try startServer(capabilities: slowFlush, flushGate: gate)
        let client = try Client(unixPath: path)
        try client.connect()
        XCTAssertEqual(try client.write([1, 2, 3, 4], at: 0, cookie: 7), 0, "the write is acknowledged")
        try client.sendRequest(type: Client.Cmd.flush, cookie: 1)
        gate.waitForArrival()

        let returned = Atomic<Bool>(false)
        let running = Task {
            await server.run()
            returned.store(true, ordering: .releasing)
        }
        running.cancel()
        // Cancellation began the shutdown: the listener is closed, so new clients are refused.
        let refused = await waitUntil("the cancelled run() to stop the listener") {
            (try? Client(unixPath: path)) == nil
        }
        XCTAssertTrue(refused)
        // The flush is still held, so the shutdown cannot have finished and run() must still wait.
        XCTAssertFalse(returned.load(ordering: .acquiring), "run() returned before the server drained")
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 0)
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 0)

        gate.open()
        XCTAssertEqual(try client.readSimpleReply().cookie, 1, "the request in flight was answered")
        try await withBoundedWait("the cancelled run() to return") { await running.value }
        XCTAssertTrue(returned.load(ordering: .acquiring))
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 1, "the backend was closed")
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1, "the provider was shut down")
        XCTAssertEqual(Array(state.data.withLock { $0 }.prefix(4)), [1, 2, 3, 4])
    }

    func testCancellingATaskGroupThatRunsTheServerEndsTheGroup() async throws {
        let (server, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect()
        try await withBoundedWait("the task group to end after cancelAll()") {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                group.cancelAll()
            }
        }
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1)
    }

    func testRunInAnAlreadyCancelledTaskStillWaitsForTheShutdown() async throws {
        let (server, _, state) = try startServer()
        try await withBoundedWait("run() in a cancelled task to return") {
            withUnsafeCurrentTask { $0?.cancel() }
            await server.run()
            // run() returned: the shutdown it started is complete, not merely begun.
            XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1)
        }
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1)
    }
}

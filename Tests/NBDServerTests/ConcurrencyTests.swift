import NBDCore
import NBDServer
import NBDWire
import Synchronization
import XCTest

final class ConcurrencyTests: ServerTestCase {
    typealias Client = TestNBDClient
    typealias Cmd = TestNBDClient.Cmd

    private let slowFlush = Capabilities(size: 1 << 20, slowOperations: [.flush])

    func testSlowFlushDoesNotStallTheRequestsBehindIt() throws {
        let gate = Gate()
        let (_, path, _) = try startServer(capabilities: slowFlush, flushGate: gate)
        let client = try Client(unixPath: path)
        try client.connect()
        try client.sendRequest(type: Cmd.flush, cookie: 1)
        gate.waitForArrival()
        // The flush is held at the gate; a read sent after it is answered first.
        try client.sendRequest(type: Cmd.read, cookie: 2, offset: 0, length: 8)
        let first = try client.readSimpleReply()
        XCTAssertEqual(first.cookie, 2)
        XCTAssertEqual(try client.receive(8), [UInt8](repeating: 0, count: 8))
        gate.open()
        let second = try client.readSimpleReply()
        XCTAssertEqual(second.cookie, 1)
        XCTAssertEqual(second.error, 0)
    }

    func testInOrderAConnectionAnswersEachRequestBeforeTheNext() throws {
        var configuration = ServerConfiguration()
        configuration.servesRequestsInOrder = true
        let gate = Gate()
        let (_, path, state) = try startServer(capabilities: slowFlush, configuration: configuration, flushGate: gate)
        let client = try Client(unixPath: path)
        try client.connect()
        // The slow flush runs on the connection's own thread, so the read behind it waits for it.
        try client.send(
            Client.request(type: Cmd.flush, cookie: 1) + Client.request(type: Cmd.read, cookie: 2, offset: 0, length: 8))
        gate.waitForArrival()
        XCTAssertTrue(state.readThreads.withLock { $0.isEmpty }, "the read started while the flush was held")
        gate.open()
        XCTAssertEqual(try client.readSimpleReply().cookie, 1, "the flush is answered first")
        XCTAssertEqual(try client.readSimpleReply().cookie, 2)
        XCTAssertEqual(try client.receive(8), [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(
            state.flushThreads.withLock { $0 }, state.readThreads.withLock { $0 },
            "the flush ran on the connection's thread, where the read ran")
    }

    func testDisconnectWaitsForOutstandingSlowRequestsBeforeClosingTheBackend() throws {
        let gate = Gate()
        let (_, path, state) = try startServer(capabilities: slowFlush, flushGate: gate)
        let client = try Client(unixPath: path)
        try client.connect()
        try client.sendRequest(type: Cmd.flush, cookie: 1)
        try client.disconnect()
        gate.waitForArrival()
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 0, "closed while a flush was outstanding")
        gate.open()
        XCTAssertEqual(try client.readSimpleReply().cookie, 1, "the outstanding flush was answered")
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 1)
        XCTAssertEqual(state.flushes.load(ordering: .relaxed), 1)
    }

    func testManySlowRequestsBeyondTheInFlightLimitAllComplete() throws {
        var configuration = ServerConfiguration()
        configuration.maximumSlowRequestsPerConnection = 2
        // Every flush goes to the pool, so the in-flight limit is what is tested.
        configuration.inlineSlowOperationThreshold = nil
        let (_, path, state) = try startServer(capabilities: slowFlush, configuration: configuration)
        let client = try Client(unixPath: path)
        try client.connect()
        var batch: [UInt8] = []
        for cookie in 0..<50 {
            batch += Client.request(
                type: cookie % 2 == 0 ? Cmd.flush : Cmd.read, cookie: UInt64(cookie), length: cookie % 2 == 0 ? 0 : 4)
        }
        try client.send(batch)
        var readLengths: [UInt64: Int] = [:]
        for cookie in stride(from: 1, to: 50, by: 2) { readLengths[UInt64(cookie)] = 4 }
        var seen = Set<UInt64>()
        for _ in 0..<50 {
            let reply = try client.readAnyReply(readLengths: readLengths)
            seen.insert(reply.cookie)
        }
        XCTAssertEqual(seen, Set(0..<50))
        XCTAssertEqual(state.flushes.load(ordering: .relaxed), 25)
    }

    func testManyConnectionsAtOnce() throws {
        let (_, path, state) = try startServer()
        let clients = try (0..<8).map { _ in try Client(unixPath: path) }
        for client in clients { try client.connect() }
        for (index, client) in clients.enumerated() {
            XCTAssertEqual(try client.write([UInt8(index)], at: UInt64(index)), 0)
        }
        for client in clients {
            XCTAssertEqual(try client.read(8, at: 0).1, [0, 1, 2, 3, 4, 5, 6, 7])
        }
        XCTAssertEqual(state.opens.load(ordering: .relaxed), 8)
    }

    func testConnectionsAboveTheLimitAreRefused() throws {
        var configuration = ServerConfiguration()
        configuration.maximumConnections = 1
        let (_, path, _) = try startServer(configuration: configuration)
        let first = try Client(unixPath: path)
        try first.connect()
        let second = try Client(unixPath: path)
        XCTAssertTrue(second.serverClosed())
        try first.disconnect()
        XCTAssertTrue(first.serverClosed())
    }

    func testShutdownFinishesRequestsInFlightClosesBackendsAndShutsDownTheProvider() async throws {
        let gate = Gate()
        let state = TestExportState(size: 1 << 20, flushGate: gate)
        let server = NBDServer(provider: TestProvider(state: state, capabilities: slowFlush))
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        let client = try Client(unixPath: path)
        try client.connect()
        try client.sendRequest(type: Cmd.flush, cookie: 1)
        gate.waitForArrival()

        let stopped = Task { await server.shutdown() }
        let running = Task { await server.run() }
        // The flush is still held; shutdown must wait for it.
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 0)
        gate.open()
        XCTAssertEqual(try client.readSimpleReply().cookie, 1, "the request in flight was answered")
        await stopped.value
        await running.value
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 1)
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1)
        XCTAssertThrowsError(try Client(unixPath: path), "the socket file is gone")
        // A second shutdown returns at once.
        await server.shutdown()
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1)
    }

    func testShutdownClosesAClientThatStoppedReadingAfterTheGracePeriod() async throws {
        var configuration = ServerConfiguration()
        configuration.shutdownGracePeriod = .milliseconds(50)
        let state = TestExportState(size: 4 << 20)
        let server = NBDServer(
            provider: TestProvider(state: state, capabilities: Capabilities(size: 4 << 20)),
            configuration: configuration)
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        let client = try Client(unixPath: path)
        try client.connect()
        // Far more reply data than socket buffers hold, and the client never reads it.
        var batch: [UInt8] = []
        for cookie in 0..<64 {
            batch += Client.request(type: Cmd.read, cookie: UInt64(cookie), offset: 0, length: 4 << 20)
        }
        try client.send(batch)
        await server.shutdown()
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 1)
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1)
    }

    func testShutdownEndsAnIdleConnectionInTheHandshake() async throws {
        let state = TestExportState(size: 4096)
        let server = NBDServer(provider: TestProvider(state: state, capabilities: Capabilities(size: 4096)))
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        let client = try Client(unixPath: path)
        _ = try client.readGreeting()
        await server.shutdown()
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1)
    }
}

import NBDCore
import NBDServer
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

/// `ServerConfiguration.eventHandler`: each event's kind, level and metadata over a real session, and
/// the string loggers fed from the same events.
final class ServerEventTests: ServerTestCase {
    typealias Client = TestNBDClient

    final class Recorder: Sendable {
        private let storage = LockedValue<[ServerEvent]>([])
        private let arrivals = DispatchSemaphore(value: 0)
        var events: [ServerEvent] { storage.withLock { $0 } }
        var handler: @Sendable (ServerEvent) -> Void {
            { [self] event in
                storage.withLock { $0.append(event) }
                arrivals.signal()
            }
        }

        /// Blocks until an event of `kind` arrived (bounded; fails the test otherwise).
        func waitFor(_ kind: ServerEvent.Kind, file: StaticString = #filePath, line: UInt = #line) -> ServerEvent? {
            while true {
                if let event = events.first(where: { $0.kind == kind }) { return event }
                if !arrivals.waitOrFail("a \(kind) event in \(events.map(\.kind))", file: file, line: line) {
                    return nil
                }
            }
        }
    }

    func testASessionsEventsCarryKindsLevelsAndMetadata() async throws {
        let recorder = Recorder()
        var configuration = ServerConfiguration()
        configuration.eventHandler = recorder.handler
        let (server, path, _) = try startServer(
            capabilities: Capabilities(size: 1 << 20, canZero: true, canFastZero: true), configuration: configuration)
        let client = try Client(unixPath: path)
        _ = try client.connect(name: "vm1")
        XCTAssertEqual(try client.read(512, at: 0).0, 0)
        // The test export never zeroes fast: the stack fails the request (ENOTSUP).
        XCTAssertNotEqual(
            try client.command(Client.Cmd.writeZeroes, flags: Client.Flag.fastZero, offset: 0, length: 4096), 0)
        // Beyond the end: the server refuses it before the stack sees it (EINVAL).
        XCTAssertEqual(try client.command(Client.Cmd.trim, offset: 1 << 20, length: 4096), 22)
        try client.disconnect()
        let closed = recorder.waitFor(.connectionClosed)
        await server.shutdown()

        let events = recorder.events
        let kinds = events.map(\.kind).filter { $0 != .message }
        XCTAssertEqual(
            kinds,
            [
                .listening, .connectionOpened, .exportOpened, .requestFailed, .requestRefused, .connectionClosed,
                .shutdownBegan, .shutdownFinished,
            ])
        let id = try XCTUnwrap(events.first { $0.kind == .connectionOpened }?.connectionID)
        for event in events where [.connectionOpened, .exportOpened, .requestFailed, .connectionClosed].contains(event.kind) {
            XCTAssertEqual(event.connectionID, id, "\(event.kind)")
        }
        XCTAssertTrue(events.first { $0.kind == .listening }?.metadata["address"]?.hasPrefix("nbd+unix://") ?? false)
        XCTAssertEqual(events.first { $0.kind == .connectionOpened }?.metadata["connections"], "1")
        // The client's address (here a Unix socket, with its process's credentials).
        let opened = try XCTUnwrap(events.first { $0.kind == .connectionOpened })
        XCTAssertEqual(opened.metadata["peer"], "unix")
        XCTAssertEqual(opened.metadata["peer-pid"], String(getpid()))
        XCTAssertEqual(opened.metadata["peer-uid"], String(getuid()))
        XCTAssertEqual(events.first { $0.kind == .exportOpened }?.metadata["peer-pid"], String(getpid()))
        XCTAssertEqual(closed?.metadata["connections"], "0")
        XCTAssertEqual(events.first { $0.kind == .exportOpened }?.metadata["export"], "vm1")
        let failed = try XCTUnwrap(events.first { $0.kind == .requestFailed })
        XCTAssertEqual(failed.level, .warning)
        XCTAssertEqual(failed.metadata["command"], "zero")
        XCTAssertEqual(failed.metadata["errno"], NBDError.Code.notSupported.name)
        XCTAssertEqual(failed.metadata["length"], "4096")
        XCTAssertEqual(failed.metadata["offset"], "0")
        let refused = try XCTUnwrap(events.first { $0.kind == .requestRefused })
        XCTAssertEqual(refused.metadata["errno"], "EINVAL")
        XCTAssertEqual(refused.level, .debug)
        XCTAssertEqual(events.first { $0.kind == .connectionOpened }?.level, .info)
        XCTAssertEqual(events.last?.kind, .shutdownFinished)
    }

    func testProblemsReachTheErrorLoggerAsTextAndDetailTheLogger() async throws {
        let recorder = Recorder()
        let problems = LockedValue<[String]>([])
        let details = LockedValue<[String]>([])
        var configuration = ServerConfiguration()
        configuration.eventHandler = recorder.handler
        configuration.errorLogger = { line in problems.withLock { $0.append(line) } }
        configuration.logger = { line in details.withLock { $0.append(line) } }
        let (server, path, state) = try startServer(configuration: configuration)
        state.failingOpens.store(1, ordering: .relaxed)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        _ = try? client.go(name: "broken")
        let failed = recorder.waitFor(.exportOpenFailed)
        XCTAssertEqual(failed?.level, .error)
        XCTAssertEqual(failed?.metadata["export"], "broken")
        XCTAssertEqual(failed?.metadata["errno"], "EIO")
        let id = try XCTUnwrap(failed?.connectionID)
        XCTAssertEqual(
            problems.withLock { $0 },
            ["connection \(id): cannot open export 'broken' for the client: EIO: the test export refuses this open"])
        XCTAssertTrue(details.withLock { $0 }.contains("connection \(id): accepted"), "\(details.withLock { $0 })")
        XCTAssertFalse(details.withLock { $0 }.contains { $0.contains("cannot open export") }, "problems go to errorLogger only")
        await server.shutdown()
    }
}

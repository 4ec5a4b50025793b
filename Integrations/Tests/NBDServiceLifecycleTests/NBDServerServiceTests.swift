import IntegrationsTestSupport
import Logging
import NBDClient
import NBDCore
import NBDServer
import NBDServiceLifecycle
import ServiceLifecycle
import Synchronization
import XCTest

/// `NBDServerService` in a `ServiceGroup`: graceful shutdown (what SIGTERM triggers) and
/// cancellation both drain the requests in flight, so no acknowledged write is lost, and close
/// every backend before the group returns.
final class NBDServerServiceTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUp() async throws {
        directory = try TemporaryDirectory()
    }

    override func tearDown() async throws {
        directory.remove()
    }

    private let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Starts `writes` writes of 4 KiB each at distinct offsets, held at the export's gate, and
    /// waits (bounded) until all of them have reached the backend.
    private func startHeldWrites(
        _ writes: Int, to connection: NBDConnection, gate: WriteGate
    ) async throws -> Task<[Int], Never> {
        let acknowledged = Task {
            await withTaskGroup(of: Int?.self) { group in
                for index in 0..<writes {
                    group.addTask {
                        let block = [UInt8](repeating: UInt8(index + 1), count: 4096)
                        do {
                            try await connection.write(block, at: UInt64(index * 4096))
                            return index
                        } catch {
                            return nil
                        }
                    }
                }
                var done: [Int] = []
                for await index in group { if let index { done.append(index) } }
                return done.sorted()
            }
        }
        await waitUntil("\(writes) writes to reach the backend") { gate.arrivals == writes }
        return acknowledged
    }

    /// Every acknowledged write is in the export, and every connection's backend was closed.
    private func assertNothingLost(
        _ acknowledged: [Int], state: ExportState, file: StaticString = #filePath, line: UInt = #line
    ) {
        for index in acknowledged {
            XCTAssertEqual(
                state.bytes(at: index * 4096, count: 4096), [UInt8](repeating: UInt8(index + 1), count: 4096),
                "acknowledged write \(index) is in the export", file: file, line: line)
        }
        XCTAssertEqual(
            state.closes.load(ordering: .relaxed), state.opens.load(ordering: .relaxed), "every backend was closed",
            file: file, line: line)
        XCTAssertEqual(
            state.shutdowns.load(ordering: .relaxed), 1, "the provider was shut down", file: file, line: line)
    }

    func testGracefulShutdownAnswersWritesInFlightAndClosesBackendsBeforeTheGroupReturns() async throws {
        let gate = WriteGate()
        let state = ExportState(size: 1 << 20, writeGate: gate)
        let server = NBDServer(provider: GatedMemoryProvider(state: state))
        let path = directory.socket()
        let group = ServiceGroup(
            services: [NBDServerService(server: server, listeningOn: [.unix(path: path)])], logger: quietLogger)
        let running = Task { try await group.run() }
        await waitUntil("the service to listen") { !server.addresses.isEmpty }

        let connection = try await connect(path)
        let writes = try await startHeldWrites(8, to: connection, gate: gate)
        // What the group does on SIGTERM (its gracefulShutdownSignals) or SIGINT.
        await group.triggerGracefulShutdown()
        await waitUntil("the server to stop listening") { !fileExists(path) }
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 0, "the backend stays open while writes are in flight")

        gate.open()
        let acknowledged = try await withBoundedWait("the writes in flight to be answered") { await writes.value }
        XCTAssertEqual(acknowledged, Array(0..<8), "every write in flight was answered with success")
        try await withBoundedWait("the group to return") { try await running.value }
        assertNothingLost(acknowledged, state: state)
        await connection.disconnect()
    }

    func testCancellingTheGroupLosesNoAcknowledgedWrite() async throws {
        let gate = WriteGate()
        let state = ExportState(size: 1 << 20, writeGate: gate)
        let server = NBDServer(provider: GatedMemoryProvider(state: state))
        let path = directory.socket()
        try server.listen(on: .unix(path: path))
        let group = ServiceGroup(services: [NBDServerService(server: server)], logger: quietLogger)
        let running = Task { try await group.run() }

        let connection = try await connect(path)
        let writes = try await startHeldWrites(6, to: connection, gate: gate)
        running.cancel()
        await waitUntil("the cancelled group to stop the server listening") { !fileExists(path) }
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 0, "the backend stays open while writes are in flight")

        gate.open()
        let acknowledged = try await withBoundedWait("the writes in flight to be answered") { await writes.value }
        XCTAssertEqual(acknowledged, Array(0..<6), "cancellation drained the writes in flight")
        // A cancelled group may end with CancellationError; either way it must have drained first.
        _ = try? await withBoundedWait("the cancelled group to return") { try await running.value }
        assertNothingLost(acknowledged, state: state)
        await connection.disconnect()
    }

    func testAnAddressThatCannotBeBoundFailsTheServiceAndShutsTheServerDown() async throws {
        let state = ExportState(size: 4096)
        let server = NBDServer(provider: GatedMemoryProvider(state: state))
        let service = NBDServerService(server: server, listeningOn: [.unix(path: directory.path + "/missing/nbd.sock")])
        do {
            try await withBoundedWait("the service to fail") { try await service.run() }
            XCTFail("run() should throw: the socket's directory does not exist")
        } catch let error as NBDError {
            XCTAssertFalse(error.message.isEmpty)
        }
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1, "the server was shut down")
    }

    func testTheServiceReturnsWhenTheServerIsShutDownDirectly() async throws {
        let state = ExportState(size: 4096)
        let server = NBDServer(provider: GatedMemoryProvider(state: state))
        try server.listen(on: .unix(path: directory.socket()))
        let service = NBDServerService(server: server)
        let running = Task { try await service.run() }
        await server.shutdown()
        try await withBoundedWait("the service to return") { try await running.value }
        XCTAssertEqual(state.shutdowns.load(ordering: .relaxed), 1)
    }
}

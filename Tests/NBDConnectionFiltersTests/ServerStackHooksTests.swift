import Foundation
import NBDBackends
import NBDClient
import NBDConnectionFilters
import NBDCore
import NBDServer
import NBDTestSupport
import Synchronization
import XCTest

/// The server side of the stack hooks these filters need: the peer in `ConnectionInfo`, the export
/// list, default export and description, preconnect refusals, and `ServerControl`.
final class ServerStackHooksTests: XCTestCase {
    /// Records the ConnectionInfo each open sees.
    final class Recorder: Sendable {
        let seen = LockedValue<[ConnectionInfo]>([])
    }

    struct RecordingLayer: FilterLayer {
        let recorder: Recorder
        var name: String { "recording" }
        func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
            recorder.seen.withLock { $0.append(connection) }
            return next
        }
    }

    func socketPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("hooks-\(UUID().uuidString.prefix(8)).sock").path
    }

    func testUnixPeersCarryTheClientsCredentialsAndTCPPeersTheirAddress() async throws {
        let recorder = Recorder()
        let server = NBDServer(
            provider: FilterStack([RecordingLayer(recorder: recorder)], over: try MemoryBackendProvider(size: 4096)))
        let path = socketPath()
        try server.listen(on: .unix(path: path))
        let bound = try server.listen(on: .tcp(host: "127.0.0.1", port: 0))
        guard case .tcp(_, let port) = bound else { return XCTFail("not TCP: \(bound)") }
        let unixClient = try await withBoundedWait("unix connect") { try await NBDConnection.connect(to: .unix(path)) }
        await unixClient.disconnect()
        let tcpClient = try await withBoundedWait("tcp connect") {
            try await NBDConnection.connect(to: .tcp("127.0.0.1", port: Int(port)))
        }
        await tcpClient.disconnect()
        await server.shutdown()

        let seen = recorder.seen.withLock { $0 }
        XCTAssertEqual(seen.count, 2)
        XCTAssertEqual(seen.first?.peer?.family, .unix)
        XCTAssertEqual(seen.first?.peer?.credentials?.pid, getpid())
        XCTAssertEqual(seen.first?.peer?.credentials?.uid, getuid())
        XCTAssertEqual(seen.first?.peer?.credentials?.gid, getgid())
        XCTAssertEqual(seen.last?.peer?.family, .ipv4)
        XCTAssertEqual(seen.last?.peer?.addressText, "127.0.0.1")
        XCTAssertNotEqual(seen.last?.peer?.port, 0)
        XCTAssertEqual(seen.map(\.isTLS), [false, false])
    }

    func testListDefaultExportAndDescriptionComeFromTheStack() async throws {
        let provider = ListingProvider(
            exports: [ExportEntry(name: "a", description: "alpha"), ExportEntry(name: "")], defaultName: "canon")
        let recorder = Recorder()
        let layer = try ExportNameLayer(parameters: ["exportdesc": "fixed:described"])
        let server = NBDServer(
            provider: FilterStack([RecordingLayer(recorder: recorder), layer], over: provider),
            configuration: ServerConfiguration(exportDescription: "configured"))
        let path = socketPath()
        try server.listen(on: .unix(path: path))
        let list = try await withBoundedWait("list") { try await NBDConnection.listExports(at: .unix(path)) }
        // "" is listed under the canonical default name; no description falls back to the server's.
        XCTAssertEqual(
            list,
            [
                ExportListing(name: "a", description: "described"),
                ExportListing(name: "canon", description: "described"),
            ])
        // The default export is opened under its canonical name.
        let client = try await withBoundedWait("connect") { try await NBDConnection.connect(to: .unix(path)) }
        await client.disconnect()
        XCTAssertEqual(recorder.seen.withLock { $0.map(\.exportName) }, ["canon"])
        await server.shutdown()
    }

    func testDefaultListIsTheDefaultExportAsBefore() async throws {
        let server = NBDServer(
            provider: try MemoryBackendProvider(size: 4096), configuration: ServerConfiguration(exportDescription: "d"))
        let path = socketPath()
        try server.listen(on: .unix(path: path))
        let list = try await withBoundedWait("list") { try await NBDConnection.listExports(at: .unix(path)) }
        XCTAssertEqual(list, [ExportListing(name: "", description: "d")])
        await server.shutdown()
    }

    func testListFailureIsAnOptionErrorAndTheConnectionGoesOn() async throws {
        let server = NBDServer(
            provider: FilterStack(
                [try ExportNameLayer(parameters: ["exportname-list": "error"])],
                over: try MemoryBackendProvider(size: 4096)))
        let path = socketPath()
        try server.listen(on: .unix(path: path))
        do {
            _ = try await withBoundedWait("list") { try await NBDConnection.listExports(at: .unix(path)) }
            XCTFail("the list must fail")
        } catch {}
        let client = try await withBoundedWait("connect") { try await NBDConnection.connect(to: .unix(path)) }
        await client.disconnect()
        await server.shutdown()
    }

    func testPreconnectRefusalDropsTheClientAndOthersAreServed() async throws {
        let server = NBDServer(
            provider: FilterStack(
                [try IPLayer(parameters: ["allow": "anyipv4", "deny": "all"])],
                over: try MemoryBackendProvider(size: 4096)))
        let path = socketPath()
        try server.listen(on: .unix(path: path))
        let bound = try server.listen(on: .tcp(host: "127.0.0.1", port: 0))
        guard case .tcp(_, let port) = bound else { return XCTFail("not TCP") }
        do {
            _ = try await withBoundedWait("refused connect") { try await NBDConnection.connect(to: .unix(path)) }
            XCTFail("a Unix client must be refused by deny=all")
        } catch {}
        let client = try await withBoundedWait("tcp connect") {
            try await NBDConnection.connect(to: .tcp("127.0.0.1", port: Int(port)))
        }
        await client.disconnect()
        await server.shutdown()
    }

    func testRequestedShutdownLetsConnectedClientsFinishAndRefusesNewOnes() async throws {
        let layer = ExitWhenLayer(events: [], pollInterval: .seconds(3600))
        let control = ControlCapture()
        let server = NBDServer(provider: FilterStack([layer, control], over: try MemoryBackendProvider(size: 4096)))
        let path = socketPath()
        try server.listen(on: .unix(path: path))
        let client = try await withBoundedWait("connect") { try await NBDConnection.connect(to: .unix(path)) }
        let running = Task { await server.run() }
        control.control.withLock { $0 }?.requestShutdown()
        await waitUntil("the listener to stop") { !FileManager.default.fileExists(atPath: path) }
        // The connected client is still served.
        try await withBoundedWait("a read after the shutdown request") { _ = try await client.read(count: 512, at: 0) }
        await client.disconnect()
        try await withBoundedWait("the server to finish") { await running.value }
    }

    func testDisconnectClosesOneConnection() async throws {
        let control = ControlCapture()
        let recorder = Recorder()
        let server = NBDServer(
            provider: FilterStack(
                [control, RecordingLayer(recorder: recorder)], over: try MemoryBackendProvider(size: 4096)))
        let path = socketPath()
        try server.listen(on: .unix(path: path))
        let client = try await withBoundedWait("connect") { try await NBDConnection.connect(to: .unix(path)) }
        let id = try XCTUnwrap(recorder.seen.withLock { $0.first?.id })
        control.control.withLock { $0 }?.disconnect(connection: id)
        await waitUntil("the client to see the disconnection") {
            do {
                _ = try await client.read(count: 512, at: 0)
                return false
            } catch {
                return true
            }
        }
        await client.disconnect()
        await server.shutdown()
    }

    /// Keeps the ServerControl the server attaches.
    final class ControlCapture: FilterLayer, Sendable {
        let control = LockedValue<ServerControl?>(nil)
        var name: String { "capture" }
        func attach(_ control: ServerControl) { self.control.withLock { $0 = control } }
        func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
            next
        }
    }
}

extension ServerStackHooksTests {
    func testListEntriesWithoutDescriptionGetTheServersDescription() async throws {
        let provider = ListingProvider(
            exports: [ExportEntry(name: "a", description: "alpha"), ExportEntry(name: "")], defaultName: "canon")
        let server = NBDServer(provider: provider, configuration: ServerConfiguration(exportDescription: "configured"))
        let path = socketPath()
        try server.listen(on: .unix(path: path))
        let list = try await withBoundedWait("list") { try await NBDConnection.listExports(at: .unix(path)) }
        XCTAssertEqual(
            list,
            [ExportListing(name: "a", description: "alpha"), ExportListing(name: "canon", description: "configured")])
        await server.shutdown()
    }
}

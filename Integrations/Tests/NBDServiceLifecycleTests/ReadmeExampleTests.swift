import IntegrationsTestSupport
import Logging
import NBDBackends
import NBDClient
import NBDServer
import NBDServiceLifecycle
import ServiceLifecycle
import UnixSignals
import XCTest

/// The README's ServiceLifecycle example, with a temporary socket and the shutdown that SIGTERM
/// would trigger.
final class ReadmeExampleTests: XCTestCase {
    func testTheReadmeServiceLifecycleExampleServesAndStops() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.socket()

        let server = NBDServer(provider: try MemoryBackendProvider(size: 1 << 30))
        let service = NBDServerService(server: server, listeningOn: [.unix(path: path)])
        let group = ServiceGroup(
            services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "nbd"))
        let running = Task { try await group.run() }

        // The socket file appears at bind(), before listen(); the server lists an address once it accepts.
        await waitUntil("the service to listen") { !server.addresses.isEmpty }
        let connection = try await connect(path)
        XCTAssertEqual(connection.export.size, 1 << 30)
        await group.triggerGracefulShutdown()
        try await withBoundedWait("the group to return") { try await running.value }
        XCTAssertFalse(fileExists(path))
        await connection.disconnect()
    }
}

import InMemoryLogging
import IntegrationsTestSupport
import Logging
import NBDClient
import NBDCore
import NBDLogging
import NBDServer
import XCTest

/// `ServerConfiguration.log(to:)`: the server's events reach a swift-log `Logger` at their levels with
/// their metadata; `log(to:messageLevel:problemLevel:)` sends the plain text at chosen levels.
final class ServerLoggingTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUp() async throws {
        directory = try TemporaryDirectory()
    }

    override func tearDown() async throws {
        directory.remove()
    }

    private func logger(_ handler: InMemoryLogHandler, level: Logger.Level) -> Logger {
        var logger = Logger(label: "nbd-test", factory: { _ in handler })
        logger.logLevel = level
        logger[metadataKey: "service"] = "disk0"
        return logger
    }

    /// Serves one client, then a second one refused at the connection limit, and shuts down.
    private func serveAndRefuse(_ configuration: ServerConfiguration) async throws {
        var configuration = configuration
        configuration.maximumConnections = 1
        let server = NBDServer(
            provider: GatedMemoryProvider(state: ExportState(size: 4096)), configuration: configuration)
        let path = directory.socket()
        try server.listen(on: .unix(path: path))
        let first = try await connect(path)
        // The second client is refused during its handshake: the server closes the socket.
        let second = try? await withBoundedWait("the refused client to give up") {
            try await connect(path)
        }
        XCTAssertNil(second, "the connection over the limit is refused")
        await first.disconnect()
        try await withBoundedWait("the server to shut down") { await server.shutdown() }
    }

    func testEventsArriveAtTheirLevelsWithTheirMetadata() async throws {
        let handler = InMemoryLogHandler()
        var configuration = ServerConfiguration()
        configuration.log(to: logger(handler, level: .trace))
        try await serveAndRefuse(configuration)

        let entries = handler.entries
        func entry(_ kind: String) -> InMemoryLogHandler.Entry? {
            entries.first { $0.metadata["nbd.event"] == .string(kind) }
        }
        XCTAssertEqual(entry("listening")?.level, .info)
        XCTAssertTrue(entry("listening")?.message.description.hasPrefix("listening on unix:") ?? false, "\(entries)")
        let opened = try XCTUnwrap(entry("connection-opened"), "\(entries)")
        XCTAssertEqual(opened.level, .info)
        XCTAssertEqual(opened.message.description, "accepted", "the connection is metadata, not a prefix")
        XCTAssertNotNil(opened.metadata["connection"])
        XCTAssertEqual(opened.metadata["connections"], "1")
        XCTAssertEqual(entry("export-opened")?.metadata["export"], "")
        let refused = try XCTUnwrap(entry("connection-limit-reached"), "\(entries)")
        XCTAssertEqual(refused.level, .error)
        XCTAssertTrue(refused.message.description.contains("maximumConnections"))
        XCTAssertEqual(entry("shutdown-finished")?.message.description, "server stopped")
        XCTAssertEqual(entries.filter { $0.level >= .error }.count, 1, "\(entries)")
        // The logger's own metadata comes with every message.
        XCTAssertTrue(entries.allSatisfy { $0.metadata["service"] == "disk0" })
    }

    func testTheLoggersLevelFiltersEventsOut() async throws {
        let handler = InMemoryLogHandler()
        var configuration = ServerConfiguration()
        configuration.log(to: logger(handler, level: .warning))
        try await serveAndRefuse(configuration)

        XCTAssertEqual(handler.entries.map(\.level), [.error], "only the refused connection: \(handler.entries)")
    }

    func testTheLevelsCanBeChosen() async throws {
        let handler = InMemoryLogHandler()
        var configuration = ServerConfiguration()
        configuration.log(to: logger(handler, level: .trace), messageLevel: .info, problemLevel: .warning)
        try await serveAndRefuse(configuration)

        XCTAssertEqual(Set(handler.entries.map(\.level)), [.info, .warning])
        XCTAssertEqual(handler.entries.filter { $0.level == .warning }.count, 1)
    }
}

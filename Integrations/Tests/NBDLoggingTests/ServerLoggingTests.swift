import InMemoryLogging
import IntegrationsTestSupport
import Logging
import NBDClient
import NBDCore
import NBDLogging
import NBDServer
import XCTest

/// `ServerConfiguration.log(to:)`: the server's debug messages and problems reach a swift-log
/// `Logger` at their levels.
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

    func testDebugMessagesAndProblemsArriveAtTheirLevels() async throws {
        let handler = InMemoryLogHandler()
        var configuration = ServerConfiguration()
        configuration.log(to: logger(handler, level: .trace))
        try await serveAndRefuse(configuration)

        let entries = handler.entries
        let debug = entries.filter { $0.level == .debug }.map(\.message.description)
        let errors = entries.filter { $0.level == .error }.map(\.message.description)
        XCTAssertTrue(debug.contains { $0.hasPrefix("listening on unix:") }, "\(debug)")
        XCTAssertTrue(debug.contains { $0.contains("accepted") }, "\(debug)")
        XCTAssertTrue(debug.contains("server stopped"), "\(debug)")
        XCTAssertEqual(errors.count, 1, "\(entries)")
        XCTAssertTrue(errors.first?.contains("maximumConnections") ?? false, "\(errors)")
        XCTAssertEqual(Set(entries.map(\.level)), [.debug, .error])
        // The logger's own metadata comes with every message.
        XCTAssertTrue(entries.allSatisfy { $0.metadata["service"] == "disk0" })
    }

    func testTheLoggersLevelFiltersDebugMessagesOut() async throws {
        let handler = InMemoryLogHandler()
        var configuration = ServerConfiguration()
        configuration.log(to: logger(handler, level: .info))
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

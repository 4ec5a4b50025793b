import NBDBackends
import NBDCore
import NBDServer
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Collects the lines a server reports to its operator.
final class ProblemLog: Sendable {
    private let lines = LockedValue<[String]>([])

    func append(_ line: String) { lines.withLock { $0.append(line) } }

    var all: [String] { lines.withLock { $0 } }

    func contains(_ text: String) -> Bool { all.contains { $0.contains(text) } }
}

/// Starts TLS servers over a 1 MiB memory export on Unix sockets, with credentials made for the test.
class TLSServerTestCase: XCTestCase {
    var credentials: TestTLSCredentials!
    private var servers: [NBDServer] = []
    private var directory: String?

    static let description = "secret-export-description"

    override func setUpWithError() throws {
        credentials = try TestTLSCredentials.make()
    }

    override func tearDown() async throws {
        for server in servers { await server.shutdown() }
        servers = []
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
        directory = nil
        credentials?.remove()
    }

    enum Keys { case certificates(verifyPeer: Bool), psk }

    /// The server the last ``startServer(tls:keys:handshakeTimeout:configure:)`` started.
    var lastServer: NBDServer? { servers.last }

    /// Starts a server over `provider` (by default 1 MiB of memory) and returns its socket path and
    /// the log of operator-facing problems; `configure` adjusts the configuration last.
    func startServer(
        tls: TLSMode, keys: Keys = .certificates(verifyPeer: false), handshakeTimeout: Duration? = .seconds(60),
        provider: (any BackendProvider)? = nil, configure: (inout ServerConfiguration) -> Void = { _ in }
    ) throws -> (path: String, problems: ProblemLog) {
        let problems = ProblemLog()
        var configuration = ServerConfiguration(exportDescription: Self.description, handshakeTimeout: handshakeTimeout)
        configuration.tls = tls
        switch keys {
        case .certificates(let verifyPeer):
            configuration.secureTransport = try TLSServerTransport(
                certificatesDirectory: credentials.serverDirectory, verifyPeer: verifyPeer)
        case .psk:
            configuration.secureTransport = try TLSServerTransport(pskFile: credentials.pskFile)
        }
        configuration.errorLogger = { problems.append($0) }
        configure(&configuration)
        let export = try provider ?? MemoryBackendProvider(size: 1 << 20)
        let server = NBDServer(provider: export, configuration: configuration)
        if directory == nil {
            var template = Array("/tmp/nbd-tls-tests.XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                throw XCTSkip("mkdtemp failed")
            }
            directory = String(cString: made)
        }
        let path = directory! + "/socket-\(servers.count)"
        try server.listen(on: .unix(path: path))
        servers.append(server)
        return (path, problems)
    }

    var clientCertificates: TLSClientCredentials {
        get throws { try TLSClientCredentials(certificatesDirectory: credentials.clientDirectory) }
    }

    /// Waits (bounded) until the server reported a line containing `text`.
    func waitForProblem(
        _ text: String, in problems: ProblemLog, file: StaticString = #filePath, line: UInt = #line
    ) async {
        let found = await waitUntil("a server log line containing '\(text)'", file: file, line: line) {
            problems.contains(text)
        }
        if !found { XCTFail("server lines: \(problems.all)", file: file, line: line) }
    }
}

import NBDCore
import NBDServer
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Starts servers on Unix sockets in a private temporary directory and stops them after each test.
class ServerTestCase: XCTestCase {
    private var servers: [NBDServer] = []
    private var directory: String?

    /// Creates a server over a ``TestProvider`` and returns it with the socket path and the export
    /// state.
    func startServer(
        capabilities: Capabilities = Capabilities(size: 1 << 20, canExtents: true),
        configuration: ServerConfiguration = ServerConfiguration(),
        flushGate: Gate? = nil
    ) throws -> (server: NBDServer, path: String, state: TestExportState) {
        let state = TestExportState(size: Int(capabilities.size), flushGate: flushGate)
        let server = NBDServer(
            provider: TestProvider(state: state, capabilities: capabilities), configuration: configuration)
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        servers.append(server)
        return (server, path, state)
    }

    /// Shuts `server` down after the test, like the servers ``startServer(capabilities:configuration:flushGate:)`` starts.
    func track(_ server: NBDServer) {
        servers.append(server)
    }

    /// A fresh socket path in this test's temporary directory.
    func socketPath() throws -> String {
        if directory == nil {
            var template = Array("/tmp/nbd-server-tests.XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                throw TestClientError("mkdtemp failed")
            }
            directory = String(cString: made)
        }
        return directory! + "/socket-\(servers.count)"
    }

    override func tearDown() async throws {
        for server in servers {
            await server.shutdown()
        }
        servers = []
        if let directory {
            rmdir(directory)
        }
        directory = nil
    }
}

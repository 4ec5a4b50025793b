import NBDCore
import NBDTestSupport
import NBDWire
import XCTest

@testable import NBDServer

#if canImport(Glibc)
    import Glibc
#endif

/// Sockets the server gets rather than makes: a connected one it serves as one client
/// (`serve(connectedSocket:)`, nbdkit's `-s`) and a listening one it accepts on
/// (`listen(adoptingListeningSocket:)`, systemd socket activation).
final class AdoptedSocketTests: ServerTestCase {
    private func server() -> NBDServer {
        let state = TestExportState(size: 1 << 20)
        let server = NBDServer(provider: TestProvider(state: state, capabilities: Capabilities(size: 1 << 20)))
        track(server)
        return server
    }

    func testAConnectedSocketIsServedAsOneClientUntilItLeaves() async throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        let server = server()
        let serverEnd = pair[0]
        let served = Task { try await server.serve(connectedSocket: serverEnd) }
        let client = TestNBDClient(adopting: pair[1])
        XCTAssertEqual(try client.connect().size, 1 << 20)
        XCTAssertEqual(try client.write([1, 2, 3], at: 10), 0)
        XCTAssertEqual(try client.read(3, at: 10).1, [1, 2, 3])
        try client.disconnect()
        // serve returns once the connection has ended.
        try await withBoundedWait("serve(connectedSocket:) to return after the client left") {
            try await served.value
        }
    }

    /// A Unix socket bound and listening the way a socket-activating parent leaves it.
    private func listeningSocket(at path: String) throws -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8))
            raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(Glibc.listen(descriptor, 16), 0)
        return descriptor
    }

    func testAnAdoptedListeningSocketIsAcceptedOnAndItsFileLeftInPlace() async throws {
        let path = try socketPath()
        let descriptor = try listeningSocket(at: path)
        defer { unlink(path) }
        let server = server()
        XCTAssertEqual(try server.listen(adoptingListeningSocket: descriptor), .unix(path: path))
        for _ in 0..<2 {
            let client = try TestNBDClient(unixPath: path)
            XCTAssertEqual(try client.connect().size, 1 << 20)
            XCTAssertEqual(try client.read(4, at: 0).0, 0)
            try client.disconnect()
        }
        await server.shutdown()
        var info = stat()
        XCTAssertEqual(lstat(path, &info), 0, "the socket file belongs to whoever bound it")
    }

    func testADescriptorThatIsNotListeningIsRefused() throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        defer {
            close(pair[0])
            close(pair[1])
        }
        XCTAssertThrowsError(try server().listen(adoptingListeningSocket: pair[0])) { error in
            XCTAssertEqual((error as? NBDError)?.code, .invalidArgument)
            XCTAssertTrue("\(error)".contains("not a listening socket"), "\(error)")
        }
    }
}

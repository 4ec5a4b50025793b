import NBDCore
import NBDWire
import Synchronization
import XCTest

@testable import NBDServer

#if canImport(Glibc)
    import Glibc
#endif

/// Connections accepted on a Unix socket get ``ServerConfiguration/unixSocketSendBufferSize``; TCP
/// ones keep the kernel's autotuning.
final class SendBufferTests: ServerTestCase {
    /// What the kernel reports for a fresh Unix socket after asking for `bytes` (or asking nothing):
    /// the expectation, whatever `net.core.wmem_max` is on this machine.
    private func kernelSendBuffer(askingFor bytes: Int?) throws -> Int {
        try XCTUnwrap(Socket.unixSendBufferSize(askingFor: bytes), "no Unix socket pair to ask the kernel")
    }

    private func serverSendBuffers(_ server: NBDServer) -> [Int] {
        server.context.state.withLock { state in state.connections.values.map(\.sendBufferSize) }
    }

    func testUnixConnectionsGetTheConfiguredSendBuffer() throws {
        var configuration = ServerConfiguration()
        configuration.unixSocketSendBufferSize = 1 << 20
        let (server, path, _) = try startServer(configuration: configuration)
        let client = try TestNBDClient(unixPath: path)
        try client.connect()
        let expected = try kernelSendBuffer(askingFor: 1 << 20)
        try XCTSkipIf(
            expected == (try kernelSendBuffer(askingFor: nil)),
            "net.core.wmem_max is no larger than the default send buffer here, so the setting cannot be seen")
        XCTAssertEqual(serverSendBuffers(server), [expected])
    }

    func testTheDefaultAsksForFourMebibytes() {
        XCTAssertEqual(ServerConfiguration().unixSocketSendBufferSize, 4 << 20)
    }

    func testWithoutASizeTheKernelDefaultStays() throws {
        var configuration = ServerConfiguration()
        configuration.unixSocketSendBufferSize = nil
        let (server, path, _) = try startServer(configuration: configuration)
        let client = try TestNBDClient(unixPath: path)
        try client.connect()
        XCTAssertEqual(serverSendBuffers(server), [try kernelSendBuffer(askingFor: nil)])
    }

    func testResettingGivesANewSocketsSendBufferBack() throws {
        var pair: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        defer { close(pair[1]) }
        let socket = Socket(adopting: pair[0])
        let standard = socket.sendBufferSize
        socket.setUnixSendBufferSize(1 << 20)
        try XCTSkipIf(
            socket.sendBufferSize == standard,
            "net.core.wmem_max is no larger than the default send buffer here, so the setting cannot be seen")
        socket.resetUnixSendBufferSize()
        XCTAssertEqual(socket.sendBufferSize, standard)
        XCTAssertEqual(Socket.newSocketSendBufferSize, standard)
    }

    func testTCPSocketsAreLeftToAutotuning() throws {
        let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        let socket = Socket(adopting: descriptor)
        let before = socket.sendBufferSize
        socket.setUnixSendBufferSize(1 << 20)
        XCTAssertEqual(socket.sendBufferSize, before)
    }
}

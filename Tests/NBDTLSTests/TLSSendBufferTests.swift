import NBDCore
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

@testable import NBDServer

#if canImport(Glibc)
    import Glibc
#endif

/// A Unix connection that starts TLS goes back to the kernel's default send buffer; a plaintext one
/// keeps `ServerConfiguration.unixSocketSendBufferSize`.
final class TLSSendBufferTests: TLSServerTestCase {
    /// What the kernel reports for a fresh Unix socket after asking for `bytes` (or asking nothing):
    /// the expectation, whatever `net.core.wmem_max` is on this machine.
    private func kernelSendBuffer(askingFor bytes: Int?) throws -> Int {
        try XCTUnwrap(Socket.unixSendBufferSize(askingFor: bytes), "no Unix socket pair to ask the kernel")
    }

    private func sendBuffers() -> [Int] {
        lastServer?.context.state.withLock { state in state.connections.values.map(\.sendBufferSize) } ?? []
    }

    /// Connects, optionally upgrades to TLS, and completes `NBD_OPT_GO`.
    private func connect(_ path: String, tls: Bool) throws -> RawTLSClient {
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        if tls { try client.startTLS(try clientCertificates) }
        try client.sendOption(RawTLSClient.Option.go, RawTLSClient.infoData())
        XCTAssertEqual(try client.readOptionReplies().last?.type, RawTLSClient.Reply.ack)
        return client
    }

    func testTLSConnectionsGetTheKernelDefaultAndPlaintextOnesTheConfiguredSize() throws {
        let configured = try kernelSendBuffer(askingFor: 1 << 20)
        let standard = try kernelSendBuffer(askingFor: nil)
        try XCTSkipIf(
            configured == standard,
            "net.core.wmem_max is no larger than the default send buffer here, so the setting cannot be seen")
        let (path, _) = try startServer(tls: .on) { $0.unixSocketSendBufferSize = 1 << 20 }

        let secure = try connect(path, tls: true)
        XCTAssertEqual(sendBuffers(), [standard], "the TLS connection is back at the kernel's default")
        let plain = try connect(path, tls: false)
        XCTAssertEqual(sendBuffers().sorted(), [standard, configured].sorted(), "the plaintext one keeps the setting")
        _ = (secure, plain)
    }
}

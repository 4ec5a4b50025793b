import Foundation
import NBDBackends
import NBDClient
import NBDCore
import NBDServer
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import NBDWire
import XCTest

/// `NBDClient` over TLS against this package's own server (`nbd-serve --tls=require`): certificates,
/// pre-shared keys, several requests in flight through one session, and the refusals.
final class NBDClientAgainstTLSServerTests: TLSServerTestCase {
    private let provider = GnuTLSClientProvider()

    private func endpoint(_ path: String, _ options: ClientTLSOptions) -> NBDEndpoint {
        NBDEndpoint(.unix(path: path), tls: options)
    }

    private var pskOptions: ClientTLSOptions {
        ClientTLSOptions(pskFile: credentials.pskFile, username: TestTLSCredentials.pskUsername)
    }

    /// Many concurrent writes then reads through one TLS session; every byte comes back.
    private func concurrentRoundTrip(_ endpoint: NBDEndpoint) async throws {
        let connection = try await NBDConnection.connect(to: endpoint, tlsProvider: provider)
        XCTAssertTrue(connection.export.usesTLS)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<16 {
                group.addTask {
                    try await connection.write(
                        [UInt8](repeating: UInt8(index + 1), count: 64 << 10), at: UInt64(index) * (64 << 10))
                }
            }
            try await group.waitForAll()
        }
        try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for index in 0..<16 {
                group.addTask { (index, try await connection.read(count: 64 << 10, at: UInt64(index) * (64 << 10))) }
            }
            for try await (index, bytes) in group {
                XCTAssertEqual(bytes, [UInt8](repeating: UInt8(index + 1), count: 64 << 10), "block \(index)")
            }
        }
        await connection.disconnect()
    }

    func testCertificatesAgainstRequire() async throws {
        let server = try startServer(tls: .require)
        try await concurrentRoundTrip(
            endpoint(server.path, ClientTLSOptions(certificatesDirectory: credentials.clientDirectory)))
    }

    func testPreSharedKeyAgainstRequire() async throws {
        let server = try startServer(tls: .require, keys: .psk)
        try await concurrentRoundTrip(endpoint(server.path, pskOptions))
    }

    func testClientCertificateUnderVerifyPeer() async throws {
        let server = try startServer(tls: .require, keys: .certificates(verifyPeer: true))
        try await concurrentRoundTrip(
            endpoint(server.path, ClientTLSOptions(certificatesDirectory: credentials.clientDirectory)))
    }

    func testWrongKeyIsRefusedOnBothSides() async throws {
        let server = try startServer(tls: .require, keys: .psk)
        var options = pskOptions
        options.pskFile = credentials.wrongPSKFile
        do {
            _ = try await NBDConnection.connect(to: endpoint(server.path, options), tlsProvider: provider)
            XCTFail("a wrong pre-shared key was accepted")
        } catch {
            XCTAssertTrue(error.message.contains("TLS handshake with the server failed"), error.message)
        }
        await waitForProblem("TLS handshake with the client failed", in: server.problems)
    }

    func testUntrustedServerCertificateIsRefused() async throws {
        let server = try startServer(tls: .require)
        let others = try TestTLSCredentials.make()
        defer { others.remove() }
        do {
            _ = try await NBDConnection.connect(
                to: endpoint(server.path, ClientTLSOptions(certificatesDirectory: others.clientDirectory)),
                tlsProvider: provider)
            XCTFail("a server certificate from an untrusted CA was accepted")
        } catch {
            XCTAssertTrue(error.message.contains("TLS handshake with the server failed"), error.message)
            XCTAssertTrue(error.message.contains("ca-cert.pem"), error.message)
        }
    }

    func testPlaintextClientIsRefusedUnderRequire() async throws {
        let server = try startServer(tls: .require)
        do {
            _ = try await NBDConnection.connect(to: .unix(server.path))
            XCTFail("a plaintext client was served under --tls=require")
        } catch {
            XCTAssertTrue(error.message.contains("NBD_REP_ERR_TLS_REQD"), error.message)
        }
    }

    /// The provider checks the server certificate's name against the host name it is given (the
    /// test certificate names localhost and 127.0.0.1), unless verification is off.
    func testTheProviderChecksTheServerName() throws {
        let server = try startServer(tls: .require)
        func upgrade(hostname: String, verifyPeer: Bool = true) throws {
            let raw = try RawTLSClient(unixPath: server.path)
            try raw.startHandshake()
            try raw.sendOption(RawTLSClient.Option.startTLS)
            XCTAssertEqual(try raw.readOptionReply().type, RawTLSClient.Reply.ack)
            let session = try provider.startSession(
                descriptor: raw.fd,
                options: ClientTLSOptions(certificatesDirectory: credentials.clientDirectory, verifyPeer: verifyPeer),
                hostname: hostname, timeout: .seconds(20))
            session.close()
        }
        XCTAssertNoThrow(try upgrade(hostname: "localhost"))
        XCTAssertThrowsError(try upgrade(hostname: "not-the-server.example")) { error in
            XCTAssertTrue("\(error)".contains("TLS handshake with the server failed"), "\(error)")
        }
        XCTAssertNoThrow(try upgrade(hostname: "not-the-server.example", verifyPeer: false))
    }

    /// nbds:// over TCP, where the certificate's name is checked against the URI's host.
    func testCertificatesOverTCP() async throws {
        var configuration = ServerConfiguration()
        configuration.tls = .require
        configuration.secureTransport = try TLSServerTransport(certificatesDirectory: credentials.serverDirectory)
        let server = NBDServer(provider: try MemoryBackendProvider(size: 1 << 20), configuration: configuration)
        guard case .tcp(_, let port) = try server.listen(on: .tcp(host: "127.0.0.1", port: 0)) else {
            return XCTFail("the server did not listen on TCP")
        }
        let endpoint = try NBDEndpoint(uri: "nbds://127.0.0.1:\(port)/?tls-certificates=\(credentials.clientDirectory)")
        do {
            try await concurrentRoundTrip(endpoint)
        } catch {
            XCTFail("\(error)")
        }
        await server.shutdown()
    }
}

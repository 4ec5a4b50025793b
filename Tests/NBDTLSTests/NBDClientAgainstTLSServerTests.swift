import Foundation
import NBDClient
import NBDCore
import NBDServer
import NBDTLS
import NBDTestSupport
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
}

import Foundation
import NBDClient
import NBDCore
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// `NBDClient` over TLS (through NBDTLS's `GnuTLSClientProvider`) against the real
/// `nbdkit --tls=require`, with certificates and pre-shared keys made at test time, and the
/// refusals: a wrong key, an untrusted server certificate, a server that refuses STARTTLS.
final class NBDClientTLSTests: XCTestCase {
    private var credentials: TestTLSCredentials!
    private var nbdkit: NbdkitServer?
    private let provider = GnuTLSClientProvider()

    override func setUpWithError() throws {
        try NbdkitServer.require()
        credentials = try TestTLSCredentials.make()
    }

    override func tearDown() {
        nbdkit?.stop()
        nbdkit = nil
        credentials?.remove()
    }

    /// Starts `nbdkit ARGS memory 1M`.
    private func startNbdkit(_ arguments: [String]) async throws -> String {
        let server = try await NbdkitServer(arguments + ["memory", "1M"])
        nbdkit = server
        return server.socket
    }

    private func uri(_ socket: String, _ query: String) -> String {
        "nbds+unix:///?socket=\(socket)&\(query)"
    }

    private func connectionOptions() -> ClientConfiguration {
        ClientConfiguration(handshakeTimeout: .seconds(20))
    }

    /// Writes a pattern, reads it back, and checks the connection says it uses TLS.
    private func roundTrip(_ endpoint: NBDEndpoint) async throws {
        let connection = try await NBDConnection.connect(
            to: endpoint, configuration: connectionOptions(), tlsProvider: provider)
        XCTAssertTrue(connection.export.usesTLS)
        XCTAssertEqual(connection.export.size, 1 << 20)
        let pattern = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try await connection.write(pattern, at: 4096)
        let back = try await connection.read(count: pattern.count, at: 4096)
        XCTAssertEqual(back, pattern)
        await connection.disconnect()
    }

    func testCertificatesAgainstNbdkit() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-certificates=\(credentials.serverDirectory)"])
        try await roundTrip(try NBDEndpoint(uri: uri(socket, "tls-certificates=\(credentials.clientDirectory)")))
    }

    func testPreSharedKeyAgainstNbdkit() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-psk=\(credentials.pskFile)"])
        try await roundTrip(
            try NBDEndpoint(
                uri: uri(socket, "tls-psk-file=\(credentials.pskFile)&tls-username=\(TestTLSCredentials.pskUsername)")))
    }

    func testListingAndInfoGoThroughTLS() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-psk=\(credentials.pskFile)"])
        let endpoint = try NBDEndpoint(
            uri: uri(socket, "tls-psk-file=\(credentials.pskFile)&tls-username=\(TestTLSCredentials.pskUsername)"))
        let info = try await NBDConnection.exportInfo(
            at: endpoint, configuration: connectionOptions(), tlsProvider: provider)
        XCTAssertTrue(info.usesTLS)
        XCTAssertEqual(info.size, 1 << 20)
        let exports = try await NBDConnection.listExports(
            at: endpoint, configuration: connectionOptions(), tlsProvider: provider)
        XCTAssertEqual(exports.count, 1)
    }

    func testWrongKeyIsRefused() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-psk=\(credentials.pskFile)"])
        let endpoint = try NBDEndpoint(
            uri: uri(socket, "tls-psk-file=\(credentials.wrongPSKFile)&tls-username=\(TestTLSCredentials.pskUsername)"))
        await assertThrowsNBDError(
            try await NBDConnection.connect(to: endpoint, configuration: connectionOptions(), tlsProvider: provider),
            containing: "TLS handshake with the server failed")
    }

    func testUntrustedServerCertificateIsRefusedUnlessVerificationIsOff() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-certificates=\(credentials.serverDirectory)"])
        // Another test CA: it did not sign the server's certificate.
        let others = try TestTLSCredentials.make()
        defer { others.remove() }
        let strict = try NBDEndpoint(uri: uri(socket, "tls-certificates=\(others.clientDirectory)"))
        await assertThrowsNBDError(
            try await NBDConnection.connect(to: strict, configuration: connectionOptions(), tlsProvider: provider),
            containing: "TLS handshake with the server failed")
        let lax = try NBDEndpoint(
            uri: uri(socket, "tls-certificates=\(others.clientDirectory)&tls-verify-peer=false"))
        try await roundTrip(lax)
    }

    func testRequireFailsWhenTheServerRefusesStartTLS() async throws {
        let socket = try await startNbdkit(["--tls=off"])
        var endpoint = NBDEndpoint.unix(socket)
        endpoint.tls = ClientTLSOptions(mode: .require, pskFile: credentials.pskFile, username: "alice")
        await assertThrowsNBDError(
            try await NBDConnection.connect(to: endpoint, configuration: connectionOptions(), tlsProvider: provider),
            containing: "refused NBD_OPT_STARTTLS")
    }

    func testOnFallsBackToPlaintextWhenTheServerRefusesStartTLS() async throws {
        let socket = try await startNbdkit(["--tls=off"])
        var endpoint = NBDEndpoint.unix(socket)
        endpoint.tls = ClientTLSOptions(mode: .on, pskFile: credentials.pskFile, username: "alice")
        let connection = try await NBDConnection.connect(
            to: endpoint, configuration: connectionOptions(), tlsProvider: provider)
        XCTAssertFalse(connection.export.usesTLS)
        try await connection.write([1, 2, 3], at: 0)
        await connection.disconnect()
    }

    func testOnUsesTLSWhenTheServerOffersIt() async throws {
        let socket = try await startNbdkit(["--tls=on", "--tls-psk=\(credentials.pskFile)"])
        var endpoint = NBDEndpoint.unix(socket)
        endpoint.tls = ClientTLSOptions(mode: .on, pskFile: credentials.pskFile, username: "alice")
        try await roundTrip(endpoint)
    }

    func testTLSWithoutAProviderFailsClearly() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-psk=\(credentials.pskFile)"])
        let endpoint = try NBDEndpoint(uri: uri(socket, "tls-psk-file=\(credentials.pskFile)"))
        await assertThrowsNBDError(
            try await NBDConnection.connect(to: endpoint, configuration: connectionOptions()),
            containing: "needs a TLS provider")
    }

    private func assertThrowsNBDError<T>(
        _ body: @autoclosure () async throws -> T, containing text: String, file: StaticString = #filePath,
        line: UInt = #line
    ) async {
        do {
            _ = try await body()
            XCTFail("expected an error containing '\(text)'", file: file, line: line)
        } catch {
            XCTAssertTrue("\(error)".contains(text), "\(error)", file: file, line: line)
        }
    }
}

import Foundation
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import NBDWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// `NBDTLS`'s client side against the real `nbdkit --tls=require`: a raw NBD handshake (STARTTLS,
/// then GO over TLS) and one read, with certificates and with a pre-shared key.
final class TLSClientSessionTests: XCTestCase {
    typealias Option = RawTLSClient.Option
    typealias Reply = RawTLSClient.Reply

    private var credentials: TestTLSCredentials!
    private var nbdkit: NbdkitServer?

    override func setUpWithError() throws {
        try NbdkitServer.require()
        credentials = try TestTLSCredentials.make()
    }

    override func tearDown() {
        nbdkit?.stop()
        nbdkit = nil
        credentials?.remove()
    }

    /// Starts `nbdkit ARGS data ...`: the export holds "NBDTLS!" then zeroes.
    private func startNbdkit(_ arguments: [String]) async throws -> String {
        let server = try await NbdkitServer(arguments + ["data", "data=\"NBDTLS!\"", "size=1M"])
        nbdkit = server
        return server.socket
    }

    /// STARTTLS, GO over TLS, one 512-byte read; returns the bytes read.
    private func readFirstSector(_ socket: String, _ client: TLSClientCredentials) throws -> [UInt8] {
        let connection = try RawTLSClient(unixPath: socket)
        try connection.startHandshake()
        try connection.startTLS(client)
        try connection.sendOption(Option.go, RawTLSClient.infoData())
        let replies = try connection.readOptionReplies()
        XCTAssertEqual(replies.last?.type, Reply.ack, "GO over TLS")
        try connection.sendRequest(0, length: 512, cookie: 42)
        let header = try connection.readSimpleReplyHeader()
        XCTAssertEqual(header.magic, RawTLSClient.simpleReplyMagic)
        XCTAssertEqual(header.error, 0)
        XCTAssertEqual(header.cookie, 42)
        return try connection.receive(512)
    }

    private let expected = Array("NBDTLS!".utf8) + [UInt8](repeating: 0, count: 512 - 7)

    func testCertificatesAgainstNbdkit() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-certificates=\(credentials.serverDirectory)"])
        let client = try TLSClientCredentials(certificatesDirectory: credentials.clientDirectory)
        XCTAssertEqual(try readFirstSector(socket, client), expected)
    }

    func testClientCertificateAgainstNbdkitVerifyingPeers() async throws {
        let socket = try await startNbdkit([
            "--tls=require", "--tls-certificates=\(credentials.serverDirectory)", "--tls-verify-peer",
        ])
        let client = try TLSClientCredentials(certificatesDirectory: credentials.clientDirectory)
        XCTAssertEqual(try readFirstSector(socket, client), expected)
    }

    func testPreSharedKeyAgainstNbdkit() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-psk=\(credentials.pskFile)"])
        let client = try TLSClientCredentials(pskFile: credentials.pskFile, username: TestTLSCredentials.pskUsername)
        XCTAssertEqual(try readFirstSector(socket, client), expected)
    }

    func testWrongKeyIsRefused() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-psk=\(credentials.pskFile)"])
        let client = try TLSClientCredentials(
            pskFile: credentials.wrongPSKFile, username: TestTLSCredentials.pskUsername)
        XCTAssertThrowsError(try readFirstSector(socket, client))
    }

    /// With `verifyPeer`, a server certificate from a CA the client does not trust fails the
    /// handshake; without it, the same server is accepted.
    func testUntrustedServerCertificateIsRefusedUnlessVerificationIsOff() async throws {
        let socket = try await startNbdkit(["--tls=require", "--tls-certificates=\(credentials.serverDirectory)"])
        let other = credentials.root.appendingPathComponent("other-trust").path
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        // A CA file that is not the server's CA: the stranger's own certificate.
        try FileManager.default.copyItem(
            atPath: credentials.strangerDirectory + "/client-cert.pem", toPath: other + "/ca-cert.pem")
        let strict = try TLSClientCredentials(certificatesDirectory: other)
        XCTAssertThrowsError(try readFirstSector(socket, strict)) { error in
            XCTAssertTrue("\(error)".contains("TLS handshake with the server failed"), "\(error)")
        }
        let lax = try TLSClientCredentials(certificatesDirectory: other, verifyPeer: false)
        XCTAssertEqual(try readFirstSector(socket, lax), expected)
    }
}

import NBDBackends
import NBDCore
import NBDServer
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import NBDWire
import XCTest

/// Who may connect: pre-shared keys, and client certificates under `verifyPeer`.
final class TLSAuthenticationTests: TLSServerTestCase {
    typealias Option = RawTLSClient.Option
    typealias Reply = RawTLSClient.Reply

    func testPSKClientIsServed() throws {
        let (path, _) = try startServer(tls: .require, keys: .psk)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.startTLS(
            try TLSClientCredentials(pskFile: credentials.pskFile, username: TestTLSCredentials.pskUsername))
        try client.sendOption(Option.list)
        XCTAssertEqual(try client.readOptionReplies().map(\.type), [Reply.server, Reply.ack])
    }

    func testWrongPSKKeyIsRefusedAndLogged() async throws {
        let (path, problems) = try startServer(tls: .require, keys: .psk)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        let wrong = try TLSClientCredentials(
            pskFile: credentials.wrongPSKFile, username: TestTLSCredentials.pskUsername)
        XCTAssertThrowsError(try client.startTLS(wrong), "a wrong key must not complete the handshake")
        await waitForProblem("TLS handshake with the client failed", in: problems)
        XCTAssertTrue(problems.contains(credentials.pskFile), "the line should name the key file: \(problems.all)")
    }

    func testClientCertificateFromTheCAIsAcceptedUnderVerifyPeer() throws {
        let (path, _) = try startServer(tls: .require, keys: .certificates(verifyPeer: true))
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.startTLS(try clientCertificates)
        try client.sendOption(Option.list)
        XCTAssertEqual(try client.readOptionReplies().map(\.type), [Reply.server, Reply.ack])
    }

    func testClientCertificateFromAnotherCAIsRefusedUnderVerifyPeer() async throws {
        let (path, problems) = try startServer(tls: .require, keys: .certificates(verifyPeer: true))
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        let stranger = try TLSClientCredentials(certificatesDirectory: credentials.strangerDirectory)
        // Depending on the TLS version the client learns of the refusal in the handshake or when
        // the server closes right after it; either way no option is ever answered.
        do {
            try client.startTLS(stranger)
            try client.sendOption(Option.list)
            XCTAssertThrowsError(try client.readOptionReply(), "a client certificate from another CA was accepted")
        } catch {}
        await waitForProblem("--tls-verify-peer", in: problems)
    }

    func testServerCertificateFromAnUntrustedCAIsRefusedByTheClient() throws {
        let (path, _) = try startServer(tls: .require)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        // The stranger directory's CA is the server's own; trust only the other CA instead.
        let other = credentials.root.appendingPathComponent("other").path
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: credentials.strangerDirectory + "/client-cert.pem", toPath: other + "/ca-cert.pem")
        XCTAssertThrowsError(try client.startTLS(try TLSClientCredentials(certificatesDirectory: other)))
    }

    func testMissingCertificateFilesAreReportedByName() {
        XCTAssertThrowsError(try TLSServerTransport(certificatesDirectory: "/nonexistent")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/ca-cert.pem"), "\(error)")
        }
        XCTAssertThrowsError(try TLSServerTransport(pskFile: "/nonexistent.psk")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent.psk"), "\(error)")
        }
    }

    func testMalformedPSKFileIsRefused() throws {
        let file = credentials.root.appendingPathComponent("bad.psk").path
        try "alice:not-hex\n".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TLSServerTransport(pskFile: file)) { error in
            XCTAssertTrue("\(error)".contains("line 1"), "\(error)")
        }
    }

    func testTLSWithoutASecureTransportIsRefusedAtListen() throws {
        var configuration = ServerConfiguration()
        configuration.tls = .require
        let server = NBDServer(provider: try MemoryBackendProvider(size: 1 << 20), configuration: configuration)
        XCTAssertThrowsError(try server.listen(on: .unix(path: "/tmp/nbd-tls-never-\(getpid())"))) { error in
            XCTAssertTrue("\(error)".contains("secureTransport"), "\(error)")
        }
    }
}

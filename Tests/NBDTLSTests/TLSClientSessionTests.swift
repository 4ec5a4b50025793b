import Foundation
import NBDTLS
import NBDTestSupport
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
    private var nbdkit: Process?
    private var directory: String?

    override func setUpWithError() throws {
        guard
            FileManager.default.isExecutableFile(atPath: "/usr/sbin/nbdkit")
                || FileManager.default.isExecutableFile(atPath: "/usr/bin/nbdkit")
        else {
            let message = "nbdkit is not installed (Debian package nbdkit)"
            if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" { XCTFail(message) }
            throw XCTSkip(message)
        }
        credentials = try TestTLSCredentials.make()
    }

    override func tearDown() {
        // SIGKILL: nbdkit cannot hold the test up, whatever state its connections are in.
        if let nbdkit, nbdkit.isRunning {
            kill(nbdkit.processIdentifier, SIGKILL)
            nbdkit.waitUntilExit()
        }
        nbdkit = nil
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
        credentials?.remove()
    }

    /// Starts `nbdkit -f --exit-with-parent -U SOCKET ARGS memory 1M` with a pattern written into
    /// the first sector, and waits (bounded) for its socket.
    private func startNbdkit(_ arguments: [String]) async throws -> String {
        var template = Array("/tmp/nbd-tls-client.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw XCTSkip("mkdtemp failed")
        }
        directory = String(cString: made)
        let socket = directory! + "/socket"
        let process = Process()
        let path =
            FileManager.default.isExecutableFile(atPath: "/usr/sbin/nbdkit") ? "/usr/sbin/nbdkit" : "/usr/bin/nbdkit"
        process.executableURL = URL(fileURLWithPath: path)
        // The data plugin gives the export known contents: "NBDTLS!" then zeroes.
        process.arguments =
            ["-f", "--exit-with-parent", "-U", socket] + arguments + ["data", "data=\"NBDTLS!\"", "size=1M"]
        process.standardInput = FileHandle.nullDevice
        try process.run()
        nbdkit = process
        let appeared = await waitUntil("nbdkit's socket \(socket)") {
            FileManager.default.fileExists(atPath: socket) || !process.isRunning
        }
        guard appeared, process.isRunning else { throw XCTSkip("nbdkit did not start") }
        return socket
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

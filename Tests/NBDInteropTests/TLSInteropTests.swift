import Foundation
import NBDTestSupport
import XCTest

/// `nbd-serve --tls` against libnbd (nbdinfo, nbdcopy) and qemu-img, with X.509 certificates and
/// pre-shared keys made for each test by certtool and psktool; and what the operator sees when a
/// client is refused.
final class TLSInteropTests: XCTestCase {
    private var credentials: TestTLSCredentials!
    private var directory: URL!

    override func setUpWithError() throws {
        try InteropEnvironment.require("certtool", "psktool")
        credentials = try TestTLSCredentials.make()
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDown() {
        credentials?.remove()
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    private func quoted(_ text: String) -> String { InteropEnvironment.shellQuoted(text) }

    /// The URI with the X.509 client credentials (libnbd's query parameter).
    private func certificateURI(_ clientDirectory: String) -> String {
        "\"$uri&tls-certificates=\(clientDirectory)\""
    }

    private var pskURI: String {
        "\"nbds+unix://\(TestTLSCredentials.pskUsername)@/?socket=$unixsocket&tls-psk-file=\(credentials.pskFile)\""
    }

    /// Copies 3 MiB of random data in and out through `uri` and compares.
    private func copyCommand(_ uri: String) throws -> String {
        let source = directory.appendingPathComponent("source").path
        let copy = directory.appendingPathComponent("copy").path
        let bytes = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
        try Data(bytes).write(to: URL(fileURLWithPath: source))
        return
            "nbdcopy \(quoted(source)) \(uri) && nbdcopy \(uri) \(quoted(copy)) && cmp \(quoted(source)) \(quoted(copy)) && echo copied"
    }

    func testNbdinfoAndNbdcopyWithCertificates() throws {
        try InteropEnvironment.require("nbdinfo", "nbdcopy")
        let uri = certificateURI(credentials.clientDirectory)
        let result = try InteropEnvironment.serve(
            ["--tls=require", "--tls-certificates=\(credentials.serverDirectory)", "memory", "3M"],
            run: "nbdinfo \(uri) && \(try copyCommand(uri))")
        assertSucceeded(result, "nbdinfo and nbdcopy over TLS with certificates")
        XCTAssertTrue(result.stdout.contains("with TLS"), result.stdout)
        XCTAssertTrue(result.stdout.contains("copied"), result.stdout)
    }

    func testNbdinfoAndNbdcopyWithPreSharedKeys() throws {
        try InteropEnvironment.require("nbdinfo", "nbdcopy")
        let result = try InteropEnvironment.serve(
            ["--tls=require", "--tls-psk=\(credentials.pskFile)", "memory", "3M"],
            run: "nbdinfo \(pskURI) && \(try copyCommand(pskURI))")
        assertSucceeded(result, "nbdinfo and nbdcopy over TLS with a pre-shared key")
        XCTAssertTrue(result.stdout.contains("with TLS"), result.stdout)
        XCTAssertTrue(result.stdout.contains("copied"), result.stdout)
    }

    func testClientCertificatesUnderVerifyPeer() throws {
        try InteropEnvironment.require("nbdinfo")
        let result = try InteropEnvironment.serve(
            [
                "--tls=require", "--tls-certificates=\(credentials.serverDirectory)", "--tls-verify-peer", "memory",
                "1M",
            ],
            run: "nbdinfo --size \(certificateURI(credentials.clientDirectory)) && echo accepted; "
                + "nbdinfo --size \(certificateURI(credentials.strangerDirectory)) || echo refused")
        XCTAssertTrue(
            result.stdout.contains("1048576\naccepted"), "a client signed by the CA: \(result.stdout) \(result.stderr)")
        XCTAssertTrue(result.stdout.contains("refused"), "a client from another CA: \(result.stdout)")
        let lines = serverErrors(result)
        XCTAssertEqual(lines.count, 1, "one refusal: \(result.stderr)")
        XCTAssertTrue(lines.first?.contains("--tls-verify-peer") ?? false, "the operator should see why: \(lines)")
    }

    func testWrongPreSharedKeyIsRefusedAndLogged() throws {
        try InteropEnvironment.require("nbdinfo")
        let wrong =
            "\"nbds+unix://\(TestTLSCredentials.pskUsername)@/?socket=$unixsocket&tls-psk-file=\(credentials.wrongPSKFile)\""
        let result = try InteropEnvironment.serve(
            ["--tls=require", "--tls-psk=\(credentials.pskFile)", "memory", "1M"],
            run: "nbdinfo --size \(wrong) || echo refused")
        XCTAssertTrue(result.stdout.contains("refused"), result.stdout)
        let lines = serverErrors(result)
        XCTAssertEqual(lines.count, 1, result.stderr)
        XCTAssertTrue(lines.first?.contains("TLS handshake with the client failed") ?? false, "\(lines)")
        XCTAssertTrue(
            lines.first?.contains(credentials.pskFile) ?? false, "the line should name the key file: \(lines)")
    }

    func testPlaintextClientIsRefusedUnderRequireAndServedUnderOn() throws {
        try InteropEnvironment.require("nbdinfo")
        let plaintext = "\"nbd+unix:///?socket=$unixsocket\""
        let required = try InteropEnvironment.serve(
            ["--tls=require", "--tls-certificates=\(credentials.serverDirectory)", "memory", "1M"],
            run: "nbdinfo --size \(plaintext) || echo refused")
        XCTAssertTrue(required.stdout.contains("refused"), required.stdout)
        XCTAssertFalse(required.stdout.contains("1048576"), "the size leaked: \(required.stdout)")
        let lines = serverErrors(required)
        XCTAssertEqual(lines.count, 1, required.stderr)
        XCTAssertTrue(lines.first?.contains("--tls=require") ?? false, "\(lines)")

        let optional = try InteropEnvironment.serve(
            ["--tls=on", "--tls-certificates=\(credentials.serverDirectory)", "memory", "1M"],
            run:
                "nbdinfo --size \(plaintext) && nbdinfo --size \"nbds+unix:///?socket=$unixsocket&tls-certificates=\(credentials.clientDirectory)\""
        )
        assertSucceeded(optional, "plaintext and TLS clients under --tls=on")
        XCTAssertEqual(optional.stdout, "1048576\n1048576\n")
    }

    func testQemuImgInfoWithX509AndPSKCredentials() throws {
        try InteropEnvironment.require("qemu-img")
        let x509 = try InteropEnvironment.serve(
            ["--tls=require", "--tls-certificates=\(credentials.serverDirectory)", "memory", "2M"],
            run:
                "qemu-img info --object tls-creds-x509,id=tls0,endpoint=client,dir=\(credentials.clientDirectory) --image-opts \"driver=nbd,server.type=unix,server.path=$unixsocket,tls-creds=tls0,tls-hostname=localhost\""
        )
        assertSucceeded(x509, "qemu-img info with tls-creds-x509")
        XCTAssertTrue(x509.stdout.contains("2097152 bytes"), x509.stdout)

        // qemu reads keys.psk from the credentials directory.
        let pskDirectory = directory.appendingPathComponent("qemu-psk").path
        try FileManager.default.createDirectory(atPath: pskDirectory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: credentials.pskFile, toPath: pskDirectory + "/keys.psk")
        let psk = try InteropEnvironment.serve(
            ["--tls=require", "--tls-psk=\(credentials.pskFile)", "memory", "2M"],
            run:
                "qemu-img info --object tls-creds-psk,id=tls0,endpoint=client,dir=\(pskDirectory),username=\(TestTLSCredentials.pskUsername) --image-opts \"driver=nbd,server.type=unix,server.path=$unixsocket,tls-creds=tls0\""
        )
        assertSucceeded(psk, "qemu-img info with tls-creds-psk")
        XCTAssertTrue(psk.stdout.contains("2097152 bytes"), psk.stdout)
    }

    func testMissingCertificatesStopNbdServeBeforeItListens() throws {
        let result = try InteropEnvironment.run(
            try InteropEnvironment.nbdServe,
            ["-U", "-", "--tls=require", "--tls-certificates=\(directory.path)/none", "memory", "1M", "--run", "true"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("ca-cert.pem"), result.stderr)
    }

    /// The lines nbd-serve printed for the operator (without -v).
    private func serverErrors(_ result: InteropEnvironment.Result) -> [Substring] {
        result.stderr.split(separator: "\n").filter { $0.hasPrefix("nbd-serve: error: ") }
    }
}

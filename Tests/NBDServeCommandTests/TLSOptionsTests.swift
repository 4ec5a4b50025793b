import NBDServeCommand
import NBDServer
import XCTest

/// `--tls`, `--tls-certificates`, `--tls-psk`, `--tls-verify-peer`, with nbdkit's spellings.
final class TLSOptionsTests: XCTestCase {
    private func parse(_ line: String) throws -> ServeOptions {
        try ServeOptions.parse(line.split(separator: " ").map(String.init))
    }

    func testTLSModesAndNbdkitSpellings() throws {
        XCTAssertEqual(try parse("memory 1M").tls, .off)
        XCTAssertEqual(try parse("--tls=on memory 1M").tls, .on)
        XCTAssertEqual(try parse("--tls require memory 1M").tls, .require)
        XCTAssertEqual(try parse("memory 1M --tls=required").tls, .require)
        XCTAssertEqual(try parse("--tls=force memory 1M").tls, .require)
        XCTAssertEqual(try parse("--tls=yes memory 1M").tls, .on)
        XCTAssertEqual(try parse("--tls=false memory 1M").tls, .off)
        XCTAssertThrowsError(try parse("--tls=maybe memory 1M")) { error in
            XCTAssertTrue("\(error)".contains("off, on or require"), "\(error)")
        }
    }

    func testCredentialOptionsAreParsed() throws {
        let options = try parse("--tls=require --tls-certificates=/pki --tls-verify-peer --tls-psk /k.psk memory 1M")
        XCTAssertEqual(options.tlsCertificates, "/pki")
        XCTAssertEqual(options.tlsPSKFile, "/k.psk")
        XCTAssertTrue(options.tlsVerifyPeer)
    }

    func testCredentialsWithoutTLSOnlyWarn() throws {
        var configuration = ServerConfiguration()
        let warnings = try TLSSetup.configure(
            &configuration, from: try parse("--tls-psk=/nonexistent.psk --tls-verify-peer memory 1M"))
        XCTAssertEqual(configuration.tls, .off)
        XCTAssertNil(configuration.secureTransport)
        XCTAssertEqual(warnings.count, 2, "\(warnings)")
        XCTAssertTrue(warnings.allSatisfy { $0.contains("no effect without --tls=on or --tls=require") })
    }

    func testUnreadableCredentialsStopTheServerWithTheirName() throws {
        var configuration = ServerConfiguration()
        XCTAssertThrowsError(
            try TLSSetup.configure(&configuration, from: try parse("--tls=on --tls-psk=/nonexistent.psk memory 1M"))
        ) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent.psk"), "\(error)")
        }
        XCTAssertThrowsError(
            try TLSSetup.configure(&configuration, from: try parse("--tls=require --tls-certificates=/none memory 1M"))
        ) { error in
            XCTAssertTrue("\(error)".contains("/none/ca-cert.pem"), "\(error)")
        }
    }

    func testDefaultCertificateDirectoriesAreNbdkits() {
        XCTAssertEqual(
            TLSSetup.defaultCertificateDirectories(home: "/home/me", isRoot: false),
            ["/home/me/.pki/nbdkit", "/etc/pki/nbdkit"])
        XCTAssertEqual(TLSSetup.defaultCertificateDirectories(home: "/root", isRoot: true), ["/etc/pki/nbdkit"])
    }
}

import Foundation
import NBDTestSupport
import XCTest

/// `nbd-serve nbd ... tls=require` (the `nbd` backend as a TLS client, nbdkit's nbd-plugin
/// parameters) in front of `nbdkit --tls=require`, with certificates and pre-shared keys made by
/// certtool and psktool for each test: nbdcopy round trips compared with cmp, and the refusals.
final class ProxyTLSInteropTests: XCTestCase {
    private var credentials: TestTLSCredentials!
    private var directory: URL!

    override func setUpWithError() throws {
        try InteropEnvironment.require("nbdkit", "nbdcopy", "certtool", "psktool")
        credentials = try TestTLSCredentials.make()
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDown() {
        credentials?.remove()
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    private func q(_ text: String) -> String { InteropEnvironment.shellQuoted(text) }

    /// Runs `script` with /bin/sh in the test directory; `$SERVE` is nbd-serve.
    private func shell(_ script: String) throws -> InteropEnvironment.Result {
        try InteropEnvironment.shell(script, in: directory)
    }

    /// 4 MiB of reproducible data.
    private func makeSource() throws -> String {
        let bytes = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 11) }
        let path = directory.appendingPathComponent("source.img").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// nbdkit serves TLS with `upstreamTLS`; nbd-serve's `nbd` backend connects with
    /// `proxyParameters`; nbdcopy writes and reads back through nbd-serve, and cmp compares.
    private func roundTrip(upstreamTLS: String, proxyParameters: String, proxyTLS: String = "", clientURI: String = "\\$uri")
        throws -> InteropEnvironment.Result
    {
        let source = try makeSource()
        return try shell(
            """
            nbdkit -U - \(upstreamTLS) memory 4M --run '
                "$SERVE" -U - \(proxyTLS) nbd socket="$unixsocket" \(proxyParameters) --run "
                    nbdcopy --flush \(source) \(clientURI) && nbdcopy \(clientURI) copy.img"
            '
            cmp \(q(source)) copy.img && echo same
            """)
    }

    func testCertificatesRequiredInFrontOfNbdkitRequire() throws {
        let result = try roundTrip(
            upstreamTLS: "--tls=require --tls-certificates=\(q(credentials.serverDirectory))",
            proxyParameters: "tls=require tls-certificates=\(q(credentials.clientDirectory))")
        assertSucceeded(result, "nbdcopy through the nbd backend with tls=require and certificates")
        XCTAssertTrue(result.stdout.contains("same"), result.stdout)
    }

    /// TLS on both sides: nbdcopy speaks nbds+unix with a key to nbd-serve --tls=require, which
    /// speaks TLS with the same key to nbdkit --tls=require.
    func testPreSharedKeysOnBothHops() throws {
        let psk = q(credentials.pskFile)
        let user = TestTLSCredentials.pskUsername
        let result = try roundTrip(
            upstreamTLS: "--tls=require --tls-psk=\(psk)",
            proxyParameters: "tls=require tls-psk=\(psk) tls-username=\(user)",
            proxyTLS: "--tls=require --tls-psk=\(psk)",
            clientURI: "nbds+unix://\(user)@/?socket=\\$unixsocket\\&tls-psk-file=\(credentials.pskFile)")
        assertSucceeded(result, "nbdcopy over TLS through the nbd backend over TLS, with pre-shared keys")
        XCTAssertTrue(result.stdout.contains("same"), result.stdout)
    }

    /// An nbds URI as the upstream means tls=require, with libnbd's query parameters.
    func testAnNbdsURIUpstreamUsesTLS() throws {
        let source = try makeSource()
        let result = try shell(
            """
            nbdkit -U - --tls=require --tls-certificates=\(q(credentials.serverDirectory)) memory 4M --run '
                "$SERVE" -U - nbd uri="nbds+unix:///?socket=$unixsocket&tls-certificates=\(credentials.clientDirectory)" --run "
                    nbdcopy --flush \(source) \\$uri && nbdcopy \\$uri copy.img"
            '
            cmp \(q(source)) copy.img && echo same
            """)
        assertSucceeded(result, "nbdcopy through the nbd backend with an nbds+unix upstream URI")
        XCTAssertTrue(result.stdout.contains("same"), result.stdout)
    }

    func testWithoutTLSParametersTheBackendIsPlaintextAndRefused() throws {
        let result = try roundTrip(
            upstreamTLS: "--tls=require --tls-certificates=\(q(credentials.serverDirectory))",
            proxyParameters: "",
            clientURI: "\\$uri")
        // Without any tls parameter the proxy speaks plaintext and nbdkit refuses it.
        XCTAssertNotEqual(result.status, 0, "a plaintext proxy was served by nbdkit --tls=require")
        XCTAssertTrue(result.stderr.contains("NBD_REP_ERR_TLS_REQD"), result.stderr)
    }

    func testRequireRefusesAPlaintextUpstream() throws {
        try InteropEnvironment.require("nbdinfo")
        let result = try shell(
            """
            nbdkit -U - memory 1M --run '
                "$SERVE" -U - nbd socket="$unixsocket" tls=require tls-psk=\(q(credentials.pskFile)) tls-username=alice --run "nbdinfo \\$uri"
            '
            """)
        XCTAssertNotEqual(result.status, 0, "tls=require used a plaintext upstream")
        XCTAssertTrue(result.stderr.contains("refused NBD_OPT_STARTTLS"), result.stderr)
    }

    func testWrongKeyIsRefused() throws {
        try InteropEnvironment.require("nbdinfo")
        let result = try shell(
            """
            nbdkit -U - --tls=require --tls-psk=\(q(credentials.pskFile)) memory 1M --run '
                "$SERVE" -U - nbd socket="$unixsocket" tls=require tls-psk=\(q(credentials.wrongPSKFile)) tls-username=alice --run "nbdinfo \\$uri"
            '
            """)
        XCTAssertNotEqual(result.status, 0, "a wrong key reached the upstream")
        XCTAssertTrue(result.stderr.contains("TLS handshake with the server failed"), result.stderr)
    }
}

import Foundation
import XCTest

/// `nbd-serve nbd ...` in front of qemu-nbd 10, which speaks extended headers: the upstream
/// connection negotiates them (seen in qemu-nbd's own trace of the options it was asked for) and a
/// qemu-io client reads, writes, zeroes and trims beyond 4 GiB through the proxy.
final class ProxyExtendedHeadersInteropTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Shell lines that start qemu-nbd on an 8 GiB sparse raw file at `$DIR/qemu.sock`, tracing `event`
    /// into `qemu.trace`, and stop it by its PID when the script ends.
    private static func qemuNbdUpstream(tracing event: String) -> String {
        """
        truncate -s 8G backing.img
        qemu-nbd --fork --pid-file qemu.pid -k "$DIR/qemu.sock" -f raw -t \\
            --trace "enable=\(event),file=$DIR/qemu.trace" backing.img
        trap 'kill $(cat qemu.pid)' EXIT
        """
    }

    func testQemuIoThroughTheProxyInFrontOfQemuNbdWithExtendedHeadersUpstream() throws {
        try InteropEnvironment.requireQemuWithExtendedHeaders()
        let result = try InteropEnvironment.shell(
            """
            \(Self.qemuNbdUpstream(tracing: "nbd_negotiate_options_check_option"))
            "$SERVE" -U - nbd uri="nbd+unix:///?socket=$DIR/qemu.sock" --run '
                qemu-io -f raw -c "write -P 0x55 0 64k" -c "write -P 0x66 5G 64k" -c "flush" \\
                    -c "write -z -n 4G 512M" -c "discard 7G 1M" \\
                    -c "read -P 0x55 0 64k" -c "read -P 0x66 5G 64k" -c "read -P 0 4G 64k" "$uri" &&
                qemu-img map -f raw --output=json "$uri" > map.json'
            cat qemu.trace
            echo ===
            cat map.json
            """, in: directory)
        assertSucceeded(result, "qemu-io through the proxy in front of qemu-nbd 10")
        let parts = result.stdout.components(separatedBy: "===\n")
        XCTAssertEqual(parts.count, 2, result.stdout)
        let trace = parts.first ?? ""
        XCTAssertTrue(trace.contains("Checking option 11 (extended headers)"), "the upstream asked for them: \(trace)")
        XCTAssertFalse(trace.contains("Checking option 8 "), "no structured-reply fallback: \(trace)")
        // qemu-img map sees the data at 0 and at 5 GiB over the 8 GiB export.
        let map = parts.last ?? ""
        XCTAssertTrue(map.contains("\"start\": 5368709120") || map.contains("\"start\":5368709120"), map)
    }

    /// Extended headers on both sides: qemu-io 10 talks to nbd-serve, nbd-serve's `nbd` backend to
    /// qemu-nbd 10, and a 5 GiB zero crosses both connections as one request each (nbd-serve's stats
    /// filter counts one zero of 5 GiB; qemu-nbd's trace shows one 32-byte request of that length).
    func testAFiveGiBZeroCrossesTheProxyAsOneRequestOnEachSide() throws {
        try InteropEnvironment.requireQemuWithExtendedHeaders()
        let result = try InteropEnvironment.shell(
            """
            \(Self.qemuNbdUpstream(tracing: "nbd_receive_request"))
            "$SERVE" -U - --filter=stats nbd uri="nbd+unix:///?socket=$DIR/qemu.sock" statsfile="$DIR/stats.txt" --run '
                qemu-io -f raw -c "write -P 0x66 5G 64k" -c "write -z -n 1G 5G" -c "read -P 0 5G 64k" "$uri"'
            cat stats.txt
            echo ===
            cat qemu.trace
            """, in: directory)
        assertSucceeded(result, "a 5 GiB zero through the proxy between qemu 10 and qemu-nbd 10")
        let parts = result.stdout.components(separatedBy: "===\n")
        XCTAssertEqual(parts.count, 2, result.stdout)
        let stats = parts.first ?? ""
        XCTAssertTrue(stats.contains("zero: 1 ops") && stats.contains("5.00 GiB"), "one 5 GiB zero at nbd-serve: \(stats)")
        let zeroes = (parts.last ?? "").split(separator: "\n").filter { $0.contains(".type = 0x6") }
        XCTAssertEqual(zeroes.count, 1, "one zero upstream: \(zeroes)")
        XCTAssertTrue(
            zeroes.first.map { $0.contains("magic = 0x21e41c71") && $0.contains("len = 5368709120") } ?? false,
            "an extended request of 5 GiB upstream: \(zeroes)")
    }
}

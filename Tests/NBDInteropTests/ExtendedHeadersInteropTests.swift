import Foundation
import XCTest

/// NBD extended headers (64-bit requests) served to qemu 10, the client that negotiates them, and
/// compact headers still served to libnbd 1.14 (which does not ask) and to qemu when nbd-serve runs
/// with `--no-extended-headers`.
final class ExtendedHeadersInteropTests: XCTestCase {
    /// qemu negotiates 64-bit transactions, zeroes 5 GiB of an 8 GiB memory export in one request
    /// (the stats filter counts one zero of 5 GiB), reads zeroes back, and maps the export.
    func testQemuZeroesFiveGiBInOneRequestAndMapsTheExport() throws {
        try InteropEnvironment.requireQemuWithExtendedHeaders()
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let stats = directory.appendingPathComponent("stats").path
        // qemu-io refuses zero requests above 2 GiB unless -n (no slow fallback: NBD's fast-zero
        // flag, which the memory backend honours) is given.
        let result = try InteropEnvironment.serve(
            ["--filter=stats", "memory", "8G", "statsfile=\(stats)"],
            run: """
                qemu-nbd --list -k "$unixsocket" | grep 'transaction size' && \
                qemu-io -f raw -c 'write -P 7 0 1M' -c 'write -z -n 0 5G' -c 'read -P 0 0 1M' "$uri" && \
                qemu-img map --output=json "$uri"
                """)
        assertSucceeded(result, "qemu against nbd-serve")
        XCTAssertTrue(result.stdout.contains("transaction size: 64-bit"), result.stdout)
        XCTAssertTrue(result.stdout.contains("wrote 5368709120/5368709120 bytes at offset 0"), result.stdout)
        XCTAssertTrue(result.stdout.contains("read 1048576/1048576 bytes at offset 0"), result.stdout)
        XCTAssertFalse(result.stdout.contains("verification failed"), result.stdout)
        XCTAssertTrue(
            result.stdout.contains(#"{ "start": 0, "length": 8589934592, "depth": 0, "present": true, "zero": true"#),
            result.stdout)
        let report = try String(contentsOfFile: stats, encoding: .utf8)
        let zeroLine = report.split(separator: "\n").first { $0.hasPrefix("zero:") }
        XCTAssertEqual(zeroLine.map { $0.hasPrefix("zero: 1 ops,") && $0.contains("5.00 GiB") }, true, report)
    }

    /// With `--no-extended-headers` qemu falls back to 32-bit transactions and still works; libnbd
    /// 1.14 (no extended headers) is served compact headers by the default server.
    func testCompactHeadersForQemuWhenTurnedOffAndForLibnbd() throws {
        try InteropEnvironment.requireQemuWithExtendedHeaders()
        try InteropEnvironment.require("nbdinfo")
        let off = try InteropEnvironment.serve(
            ["--no-extended-headers", "memory", "8G"],
            run: """
                qemu-nbd --list -k "$unixsocket" | grep 'transaction size' && \
                qemu-io -f raw -c 'write -P 7 0 1M' -c 'read -P 7 0 1M' "$uri"
                """)
        assertSucceeded(off, "qemu against nbd-serve --no-extended-headers")
        XCTAssertTrue(off.stdout.contains("transaction size: 32-bit"), off.stdout)
        XCTAssertTrue(off.stdout.contains("read 1048576/1048576 bytes at offset 0"), off.stdout)
        let libnbd = try InteropEnvironment.serve(["memory", "8G"], run: #"nbdinfo --size "$uri""#)
        assertSucceeded(libnbd, "nbdinfo against nbd-serve")
        XCTAssertEqual(libnbd.stdout, "8589934592\n")
    }
}

import Foundation
import XCTest

/// `--filter=stats statsformat=prometheus`: the file a real client's session leaves is valid for
/// Prometheus' own checker (`promtool check metrics`, which also lints names and types), and with
/// `statsinterval` it shows the session while the server still runs.
final class StatsPrometheusInteropTests: XCTestCase {
    func testTheMetricsFilePassesPromtoolAndCountsTheSession() throws {
        try InteropEnvironment.require("python3-libnbd", "promtool")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let metrics = directory.appendingPathComponent("nbd.prom").path
        // Reads and writes on export "vm1" (`-e vm1` puts it in $uri); then, while serving, waits (bounded) until a periodic
        // rewrite shows them.
        let command = try InteropEnvironment.pythonCommand(
            """
            import nbd, os, sys, time
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            h.pwrite(b"x" * 4096, 0)
            for i in range(3):
                h.pread(4096, i * 4096)
            try:
                h.pread(4096, 2 << 20)
            except nbd.Error:
                pass
            h.shutdown()
            deadline = time.monotonic() + 30
            while True:
                text = open(sys.argv[1]).read()
                if 'nbd_requests_total{export="vm1",operation="read"} 3' in text:
                    break
                if time.monotonic() > deadline:
                    sys.exit("the metrics file never showed the reads:\\n" + text)
                time.sleep(0.01)
            """, in: directory)
        let served = try InteropEnvironment.serve(
            [
                "-e", "vm1", "--filter=stats", "memory", "1M", "statsfile=\(metrics)", "statsformat=prometheus",
                "statsinterval=0.05",
            ], run: command + " " + InteropEnvironment.shellQuoted(metrics))
        assertSucceeded(served, "nbd-serve with statsformat=prometheus")

        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        XCTAssertTrue(text.contains(#"nbd_requests_total{export="vm1",operation="write"} 1"#), text)
        XCTAssertTrue(text.contains(#"nbd_request_bytes_total{export="vm1",operation="read"} 12288"#), text)
        XCTAssertTrue(text.contains(#"nbd_connections_open{export="vm1"} 0"#), text)
        // A read past the end never reaches the stats filter (the server refuses it), so no error is
        // counted: the filter counts what passes through it.
        XCTAssertFalse(text.contains("nbd_request_errors_total{"), text)

        let check = try InteropEnvironment.shell(
            "promtool check metrics < \"$METRICS\"", in: directory, exports: ["METRICS": InteropEnvironment.shellQuoted(metrics)])
        assertSucceeded(check, "promtool check metrics")
    }
}

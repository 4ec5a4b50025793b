import Foundation
import XCTest

/// `nbdinfo --json` against `nbd-serve`: the transmission flags a real client sees for each stack.
final class NbdinfoInteropTests: XCTestCase {
    private func info(_ arguments: [String]) throws -> [String: Any] {
        let result = try InteropEnvironment.serve(arguments, run: "nbdinfo --json \"$uri\"")
        assertSucceeded(result, "nbdinfo \(arguments)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let exports = json?["exports"] as? [[String: Any]]
        return try XCTUnwrap(exports?.first, "no export in: \(result.stdout)")
    }

    private let cacheBackend = ["connection-cache", "size=32", "init=Initial contents"]

    func testCapabilitiesOfEachStack() throws {
        try InteropEnvironment.require("nbdinfo")
        // (arguments, can_multi_conn, can_fua, can_flush, is_read_only)
        let cases: [([String], Bool, Bool, Bool, Bool)] = [
            (["memory", "1G"], true, true, true, false),
            (["-r", "memory", "1G"], true, false, true, true),
            (cacheBackend, false, true, true, false),
            (["--filter=multi-conn"] + cacheBackend, true, true, true, false),
            (["--filter=multi-conn"] + cacheBackend + ["multi-conn-mode=plugin"], false, true, true, false),
            (["--filter=multi-conn"] + cacheBackend + ["multi-conn-mode=unsafe"], true, true, true, false),
            (["--filter=multi-conn", "memory", "1G", "multi-conn-mode=disable"], false, true, true, false),
            (["--filter=fua", "memory", "1G"], true, false, true, false),
            (["--filter=fua", "memory", "1G", "fuamode=force"], true, true, true, false),
        ]
        for (arguments, multiConn, fua, flush, readOnly) in cases {
            let export = try info(arguments)
            XCTAssertEqual(export["can_multi_conn"] as? Bool, multiConn, "can_multi_conn for \(arguments)")
            XCTAssertEqual(export["can_fua"] as? Bool, fua, "can_fua for \(arguments)")
            XCTAssertEqual(export["can_flush"] as? Bool, flush, "can_flush for \(arguments)")
            XCTAssertEqual(export["is_read_only"] as? Bool, readOnly, "is_read_only for \(arguments)")
        }
    }

    func testSizeAndBlockSizesAreReported() throws {
        try InteropEnvironment.require("nbdinfo")
        let export = try info(["memory", "3M"])
        XCTAssertEqual(export["export-size"] as? Int, 3 << 20)
        XCTAssertEqual(export["block_size_maximum"] as? Int, 32 << 20)
        XCTAssertEqual(export["can_trim"] as? Bool, true)
        XCTAssertEqual(export["can_zero"] as? Bool, true)
    }

    /// A connection refused by a filter (here `fuamode=force` over a layer without FUA: the inner
    /// fua filter defaults to `none`) reaches the client as a failed NBD_OPT_GO carrying the filter's
    /// message, and the server keeps serving the next client.
    func testRefusedConnectionReportsTheFilterMessageAndTheServerKeepsServing() throws {
        try InteropEnvironment.require("nbdinfo")
        let result = try InteropEnvironment.serve(
            ["--filter=fua", "--filter=fua", "memory", "1M", "fuamode=force"],
            run: "LIBNBD_DEBUG=1 nbdinfo \"$uri\"; nbdinfo \"$uri\"; echo served")
        XCTAssertTrue(result.stdout.contains("served"), result.stdout)
        XCTAssertTrue(
            result.stderr.contains("fuamode 'force' requires FUA support"), "the client should see why: \(result.stderr)")
        // The operator sees it too, without -v.
        let serverLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("nbd-serve: error: ") }
        // nbdinfo asks with NBD_OPT_INFO and then NBD_OPT_GO, so each client is refused twice.
        XCTAssertEqual(serverLines.count, 4, "one line per refused open: \(result.stderr)")
        XCTAssertTrue(serverLines.allSatisfy { $0.contains("cannot open export ''") && $0.contains("fuamode 'force'") })
    }
}

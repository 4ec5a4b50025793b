import Foundation
import XCTest

/// Every error a backend reports reaches a real client as the right NBD wire error, through every
/// filter, for every operation (the error filter stands in for a failing backend).
final class ErrorPropagationInteropTests: XCTestCase {
    private static let operations = ["pread", "pwrite", "trim", "zero", "flush", "cache", "extents"]
    private static let codes = ["EPERM", "EIO", "ENOMEM", "EINVAL", "ENOSPC", "ESHUTDOWN"]

    private let script = """
        import nbd, os, errno
        h = nbd.NBD()
        h.add_meta_context("base:allocation")
        h.connect_uri(os.environ["uri"])
        def attempt(name, f):
            try:
                f()
                print(name, "ok")
            except nbd.Error as e:
                print(name, errno.errorcode.get(e.errnum, e.errnum))
        attempt("pread", lambda: h.pread(512, 0))
        attempt("pwrite", lambda: h.pwrite(b"x" * 512, 0))
        attempt("trim", lambda: h.trim(512, 0))
        attempt("zero", lambda: h.zero(512, 0))
        attempt("flush", lambda: h.flush())
        attempt("cache", lambda: h.cache(512, 0))
        attempt("extents", lambda: h.block_status(512, 0, lambda *args: 0))
        """

    func testEveryInjectedErrorReachesTheClientThroughEveryFilter() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        // A file supports every operation: cache (posix_fadvise) and extents (SEEK_DATA/SEEK_HOLE).
        let disk = directory.appendingPathComponent("disk.img").path
        XCTAssertTrue(FileManager.default.createFile(atPath: disk, contents: Data(count: 1 << 20)))
        let stacks: [(filters: [String], parameters: [String])] = [
            ([], []),
            (["--filter=multi-conn"], []),
            (["--filter=multi-conn"], ["multi-conn-mode=emulate"]),
            (["--filter=fua"], ["fuamode=pass"]),
            (["--filter=stats"], ["statsfile=/dev/null"]),
        ]
        for stack in stacks {
            for rotation in 0..<Self.codes.count {
                var parameters = stack.parameters
                var expected: [String] = []
                for (index, operation) in Self.operations.enumerated() {
                    let code = Self.codes[(index + rotation) % Self.codes.count]
                    parameters += ["error-\(operation)=\(code)", "error-\(operation)-rate=100%"]
                    expected.append("\(operation) \(code)")
                }
                let arguments = stack.filters + ["--filter=error", "file", disk] + parameters
                let result = try InteropEnvironment.serve(arguments, run: command)
                assertSucceeded(result, "\(arguments)")
                XCTAssertEqual(result.stdout.split(separator: "\n").map(String.init), expected, "\(arguments)")
            }
        }
    }

    func testTheStatsFilterCountsFailuresByError() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let stats = directory.appendingPathComponent("stats.txt").path
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let result = try InteropEnvironment.serve(
            ["--filter=stats", "--filter=error", "memory", "1M", "statsfile=\(stats)", "error=ENOSPC",
             "error-pwrite-rate=100%", "error-zero-rate=100%"],
            run: command)
        assertSucceeded(result, "stats over error")
        XCTAssertTrue(result.stdout.contains("pwrite ENOSPC"), result.stdout)
        let report = try String(contentsOfFile: stats, encoding: .utf8)
        XCTAssertTrue(report.contains("\nread: 1 ops"), report)
        XCTAssertFalse(report.contains("\nwrite: "), "failed requests are not counted as done: \(report)")
        XCTAssertTrue(report.contains("ENOSPC"), "failures are reported with their error: \(report)")
    }
}

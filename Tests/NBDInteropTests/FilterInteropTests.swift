import Foundation
import XCTest

/// The range, feature and flow filters as real clients see them through `nbd-serve`: nbdinfo for
/// sizes and advertised features, python libnbd for errors and for who gets served.
final class FilterInteropTests: XCTestCase {
    private func info(_ arguments: [String]) throws -> [String: Any] {
        let result = try InteropEnvironment.serve(arguments, run: "nbdinfo --json \"$uri\"")
        assertSucceeded(result, "nbdinfo \(arguments)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let exports = json?["exports"] as? [[String: Any]]
        return try XCTUnwrap(exports?.first, "no export in: \(result.stdout)")
    }

    private func python(_ arguments: [String], _ script: String) throws -> InteropEnvironment.Result {
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let preamble = "import nbd, os, sys\nuri = os.environ[\"uri\"]\n"
        return try InteropEnvironment.serve(
            arguments, run: try InteropEnvironment.pythonCommand(preamble + script, in: directory))
    }

    func testOffsetAndTruncateSizesAsNbdinfoSeesThem() throws {
        try InteropEnvironment.require("nbdinfo")
        let cases: [([String], Int)] = [
            (["--filter=offset", "memory", "1M", "offset=4K", "range=64K"], 65536),
            (["--filter=offset", "memory", "1M", "offset=1000"], (1 << 20) - 1000),
            (["--filter=truncate", "memory", "1000", "round-up=512"], 1024),
            (["--filter=truncate", "memory", "1000", "round-down=512"], 512),
            (["--filter=truncate", "memory", "1M", "truncate=3G"], 3 << 30),
        ]
        for (arguments, size) in cases {
            XCTAssertEqual(try info(arguments)["export-size"] as? Int, size, "\(arguments)")
        }
    }

    func testNozeroAndNocacheChangeWhatIsAdvertised() throws {
        try InteropEnvironment.require("nbdinfo")
        // (arguments, can_zero, can_fast_zero, can_cache)
        let cases: [([String], Bool, Bool, Bool)] = [
            // memory answers cache requests (nothing to prefetch), as nbdkit's memory plugin does.
            (["memory", "1M"], true, true, true),
            (["--filter=nozero", "memory", "1M"], false, false, true),
            (["--filter=nozero", "memory", "1M", "zeromode=emulate"], true, true, true),
            (["--filter=nozero", "memory", "1M", "zeromode=emulate", "fastzeromode=none"], true, false, true),
            (["--filter=nozero", "memory", "1M", "zeromode=plugin", "fastzeromode=none"], true, false, true),
            (["--filter=nocache", "memory", "1M", "cachemode=nop"], true, true, true),
            (["--filter=nocache", "memory", "1M", "cachemode=emulate"], true, true, true),
            (["--filter=nocache", "memory", "1M"], true, true, false),
        ]
        for (arguments, zero, fastZero, cache) in cases {
            let export = try info(arguments)
            XCTAssertEqual(export["can_zero"] as? Bool, zero, "can_zero for \(arguments)")
            XCTAssertEqual(export["can_fast_zero"] as? Bool, fastZero, "can_fast_zero for \(arguments)")
            XCTAssertEqual(export["can_cache"] as? Bool, cache, "can_cache for \(arguments)")
        }
    }

    func testNoextentsMakesASparseExportLookAllocated() throws {
        try InteropEnvironment.require("nbdinfo")
        let sparse = try InteropEnvironment.serve(["memory", "1M"], run: "nbdinfo --map \"$uri\"")
        assertSucceeded(sparse, "nbdinfo --map")
        XCTAssertTrue(sparse.stdout.contains("hole,zero"), sparse.stdout)
        let hidden = try InteropEnvironment.serve(
            ["--filter=noextents", "memory", "1M"], run: "nbdinfo --map \"$uri\"")
        assertSucceeded(hidden, "nbdinfo --map with noextents")
        XCTAssertFalse(hidden.stdout.contains("hole"), hidden.stdout)
        XCTAssertTrue(hidden.stdout.contains("1048576    0  data"), hidden.stdout)
    }

    func testProtectRefusesWritesThatChangeProtectedBytesWithEPERM() throws {
        try InteropEnvironment.require("python3-libnbd")
        let result = try python(
            ["--filter=protect", "memory", "1M", "protect=0-511", "protect=~0-0xfffff"],
            """
            h = nbd.NBD()
            h.connect_uri(uri)
            h.pwrite(bytes(512), 0)
            print("same data allowed")
            try:
                h.pwrite(b"x" * 512, 0)
                print("changed protected bytes")
            except nbd.Error as e:
                print("refused", e.errno)
            h.pwrite(b"y" * 512, 4096)
            print(bytes(h.pread(1, 4096)).decode(), bytes(h.pread(1, 0)) == b"\\0")
            """)
        assertSucceeded(result, "protect")
        XCTAssertEqual(result.stdout.split(separator: "\n"), ["same data allowed", "refused EPERM", "y True"])
    }

    func testLimitRefusesTheSecondClientWithAClearLogLineAndServesOneAfterTheFirstLeaves() throws {
        try InteropEnvironment.require("python3-libnbd")
        let result = try python(
            ["--filter=limit", "memory", "1M"],
            """
            first = nbd.NBD()
            first.connect_uri(uri)
            second = nbd.NBD()
            try:
                second.connect_uri(uri)
                print("second served")
            except nbd.Error as e:
                print("second refused")
            first.shutdown()
            # The first client's stack closes after the server reads its disconnect: retry, bounded.
            for attempt in range(200):
                third = nbd.NBD()
                try:
                    third.connect_uri(uri)
                    print("third served")
                    break
                except nbd.Error:
                    pass
            """)
        assertSucceeded(result, "limit")
        XCTAssertEqual(result.stdout.split(separator: "\n"), ["second refused", "third served"])
        let refusals = result.stderr.split(separator: "\n").filter { $0.contains("too many clients") }
        XCTAssertEqual(refusals.count, 1, result.stderr)
        XCTAssertTrue(
            refusals.first?.hasPrefix("nbd-serve: error: connection ") == true
                && refusals.first?.contains("limit=1") == true, "\(refusals)")
    }

    func testNoparallelConnectionsModeServesTheSecondClientOnlyAfterTheFirstLeaves() throws {
        try InteropEnvironment.require("python3-libnbd")
        let result = try python(
            ["--filter=noparallel", "memory", "1M", "serialize=connections"],
            """
            first = nbd.NBD()
            first.connect_uri(uri)
            print("multi-conn", first.can_multi_conn())
            second = nbd.NBD()
            second.aio_connect_uri(uri)
            for _ in range(20):
                first.pwrite(b"a" * 512, 0)
                second.poll(0)
            print("second connected while first open:", second.aio_is_ready())
            first.shutdown()
            for _ in range(1000):
                if second.aio_is_ready():
                    break
                second.poll(10)
            print("second connected after:", second.aio_is_ready(), bytes(second.pread(1, 0)).decode())
            """)
        assertSucceeded(result, "noparallel serialize=connections")
        XCTAssertEqual(
            result.stdout.split(separator: "\n"),
            ["multi-conn False", "second connected while first open: False", "second connected after: True a"])
    }

    /// delay and rate with tiny values: every request still arrives and reads back what was written
    /// (their timing is checked as counts in the unit tests, never here).
    func testDelayAndRateServeEveryRequest() throws {
        try InteropEnvironment.require("python3-libnbd")
        let result = try python(
            [
                "--filter=delay", "--filter=rate", "--filter=noparallel", "memory", "1M", "rdelay=1ms",
                "delay-write=1ms",
                "rate=1G", "connection-rate=512M",
            ],
            """
            h = nbd.NBD()
            h.connect_uri(uri)
            good = 0
            for i in range(50):
                h.pwrite(bytes([i + 1]) * 4096, i * 4096)
            for i in range(50):
                good += bytes(h.pread(4096, i * 4096)) == bytes([i + 1]) * 4096
            print(good)
            """)
        assertSucceeded(result, "delay and rate")
        XCTAssertEqual(result.stdout, "50\n")
    }
    /// A client that leaves with a request still waiting out an hour-long delay must not hold its
    /// connection, and so the server's shutdown, for that hour: the wait is cancelled and ends with
    /// ESHUTDOWN, as nbdkit's sleeps end. `timeout -s KILL` bounds the run: a server that waits the
    /// delay out is killed and the test fails on its status.
    func testAbandonedDelayedRequestDoesNotHoldTheServer() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = """
            import nbd, os
            uri = os.environ["uri"]
            waiting = nbd.NBD()
            waiting.connect_uri(uri)
            waiting.aio_pread(nbd.Buffer(4096), 0)
            waiting.pwrite(b"w" * 512, 8192)
            print("same connection served")
            other = nbd.NBD()
            other.connect_uri(uri)
            other.pwrite(b"z" * 512, 4096)
            print("other client served")
            other.shutdown()
            """
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let result = try InteropEnvironment.run(
            "/usr/bin/timeout",
            [
                "-s", "KILL", "60", try InteropEnvironment.nbdServe, "-U", "-", "--filter=delay", "memory", "1M",
                "delay-read=3600", "--run", command,
            ])
        assertSucceeded(result, "nbd-serve with an abandoned delayed read")
        XCTAssertEqual(result.stdout, "same connection served\nother client served\n")
    }
    /// What reaches the layer below, counted by the stats filter placed under nozero and nocache:
    /// emulated zeroes arrive as writes, emulated cache requests as reads, and `nop` cache requests
    /// not at all.
    func testEmulatedZeroAndCacheReachTheLayerBelowAsWritesAndReads() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = """
            import nbd, os
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            h.zero(65536, 0)
            h.cache(8192, 0)
            h.shutdown()
            """
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        func report(_ modes: [String]) throws -> String {
            let statsFile = directory.appendingPathComponent("stats-\(modes.joined())").path
            let result = try InteropEnvironment.serve(
                ["--filter=nozero", "--filter=nocache", "--filter=stats", "memory", "1M", "statsfile=\(statsFile)"]
                    + modes, run: command)
            assertSucceeded(result, "\(modes)")
            return (try? String(contentsOfFile: statsFile, encoding: .utf8)) ?? ""
        }
        let emulated = try report(["zeromode=emulate", "cachemode=emulate"])
        XCTAssertTrue(emulated.contains("write: 1 ops"), emulated)
        XCTAssertTrue(emulated.contains("read: 1 ops"), emulated)
        XCTAssertFalse(emulated.contains("zero:"), emulated)
        XCTAssertFalse(emulated.contains("cache:"), emulated)
        let passed = try report(["zeromode=plugin", "cachemode=nop"])
        XCTAssertTrue(passed.contains("zero: 1 ops"), passed)
        XCTAssertFalse(passed.contains("write:"), passed)
        XCTAssertFalse(passed.contains("read:"), passed)
        XCTAssertFalse(passed.contains("cache:"), passed)
    }
    /// A tiny per-connection rate (1 byte per second, each bucket starting with 100,000 bytes): a 1 MiB
    /// read waits, suspended off the connection's thread, so the same connection's flush and zero
    /// (which carry no data) and another connection's small reads and writes (within its own full
    /// bucket) are served meanwhile; the waiting client then leaves and the server stops at once
    /// (`timeout -s KILL` bounds the run).
    func testATinyConnectionRateStallsOnlyTheRequestItHolds() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = """
            import nbd, os
            uri = os.environ["uri"]
            slow = nbd.NBD()
            slow.connect_uri(uri)
            cookie = slow.aio_pread(nbd.Buffer(1 << 20), 0)
            slow.flush()
            slow.zero(4096, 8192)
            print("same connection served", slow.aio_command_completed(cookie))
            other = nbd.NBD()
            other.connect_uri(uri)
            other.pwrite(b"q" * 8, 65536)
            print("other connection served", bytes(other.pread(8, 65536)).decode())
            other.shutdown()
            """
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let result = try InteropEnvironment.run(
            "/usr/bin/timeout",
            [
                "-s", "KILL", "60", try InteropEnvironment.nbdServe, "-U", "-", "--filter=rate", "memory", "1M",
                "connection-rate=8", "burstiness=100000", "--run", command,
            ])
        assertSucceeded(result, "nbd-serve with connection-rate=8")
        XCTAssertEqual(
            result.stdout.split(separator: "\n"), ["same connection served False", "other connection served qqqqqqqq"])
    }
}

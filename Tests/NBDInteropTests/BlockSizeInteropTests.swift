import Foundation
import XCTest

/// The blocksize and blocksize-policy filters as real clients see them: what nbdinfo reports, what
/// qemu-io's unaligned writes become below the filter, and what a client that ignores the advertised
/// sizes is answered.
final class BlockSizeInteropTests: XCTestCase {
    private func blockSizes(_ result: InteropEnvironment.Result) throws -> [String: Int] {
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let export = try XCTUnwrap((json?["exports"] as? [[String: Any]])?.first, result.stdout)
        var sizes: [String: Int] = [:]
        for key in ["block_size_minimum", "block_size_preferred", "block_size_maximum", "export-size"] {
            sizes[key] = export[key] as? Int
        }
        return sizes
    }

    func testNbdinfoSeesThePolicysBlockSizesAsNbdkitAdvertisesThem() throws {
        try InteropEnvironment.require("nbdinfo", "nbdkit")
        let parameters = ["blocksize-minimum=512", "blocksize-preferred=64K", "blocksize-maximum=1M"]
        let ours = try InteropEnvironment.serve(
            ["--filter=blocksize-policy", "memory", "1M"] + parameters, run: "nbdinfo --json \"$uri\"")
        assertSucceeded(ours, "nbd-serve")
        let theirs = try InteropEnvironment.run(
            "/usr/bin/nbdkit",
            ["-U", "-", "--filter=blocksize-policy", "memory", "1M"] + parameters + [
                "--run", "nbdinfo --json \"$uri\"",
            ])
        assertSucceeded(theirs, "nbdkit")
        XCTAssertEqual(try blockSizes(ours), try blockSizes(theirs))
        XCTAssertEqual(try blockSizes(ours)["block_size_preferred"], 65536)
    }

    func testNbdinfoSeesTheBlocksizeFiltersRoundedSizeAndPreferredBlock() throws {
        try InteropEnvironment.require("nbdinfo")
        let result = try InteropEnvironment.serve(
            ["--filter=blocksize", "memory", "10000", "minblock=4K"], run: "nbdinfo --json \"$uri\"")
        assertSucceeded(result, "nbdinfo")
        let sizes = try blockSizes(result)
        XCTAssertEqual(sizes["export-size"], 8192, "the unaligned tail is not offered")
        XCTAssertEqual(sizes["block_size_minimum"], 1)
        XCTAssertEqual(sizes["block_size_preferred"], 4096)
    }

    /// qemu-io writes at unaligned offsets and lengths and reads the patterns back; the log filter
    /// below the blocksize filter shows that only aligned requests of at most maxdata reached it.
    func testQemuIoUnalignedWritesAreReadModifyWrittenAndReadBackIntact() throws {
        try InteropEnvironment.require("qemu-io")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("below.log").path
        let commands = [
            "write -P 0x11 0 65536", "write -P 0x55 100 5000", "write -P 0x66 12287 2",
            "read -P 0x11 0 100", "read -P 0x55 100 5000", "read -P 0x11 5100 7187", "read -P 0x66 12287 2",
            "read -P 0x11 12289 100",
        ]
        let run =
            "qemu-io -f raw \"$uri\" "
            + commands.map { "-c " + InteropEnvironment.shellQuoted($0) }.joined(separator: " ")
        let result = try InteropEnvironment.serve(
            ["--filter=blocksize", "--filter=log", "memory", "1M", "minblock=4K", "maxdata=8K", "logfile=\(log)"],
            run: run)
        assertSucceeded(result, "qemu-io")
        XCTAssertFalse(result.stdout.contains("Pattern verification failed"), result.stdout)
        XCTAssertEqual(result.stdout.components(separatedBy: "read ").count - 1, 5, result.stdout)
        let requests = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").filter {
            $0.contains(" Read id=") || $0.contains(" Write id=")
        }
        XCTAssertFalse(requests.isEmpty)
        let pattern = try Regex(#"offset=0x([0-9a-f]+) count=0x([0-9a-f]+)"#)
        for request in requests {
            let match = try XCTUnwrap(request.firstMatch(of: pattern), String(request))
            let offset = Int(match.output[1].substring!, radix: 16)!
            let count = Int(match.output[2].substring!, radix: 16)!
            XCTAssertEqual(offset % 4096, 0, "unaligned below the filter: \(request)")
            XCTAssertEqual(count % 4096, 0, "unaligned below the filter: \(request)")
            XCTAssertLessThanOrEqual(count, 8192, "larger than maxdata below the filter: \(request)")
        }
    }

    private let script = """
        import nbd, os, errno
        h = nbd.NBD()
        h.set_strict_mode(0)
        h.connect_uri(os.environ["uri"])
        def attempt(name, f):
            try:
                f()
                print(name, "ok")
            except nbd.Error as e:
                print(name, errno.errorcode.get(e.errnum, e.errnum))
        attempt("aligned", lambda: h.pwrite(b"a" * 4096, 4096))
        attempt("unaligned", lambda: h.pwrite(b"u" * 100, 10))
        attempt("readback", lambda: h.pread(100, 10) == b"u" * 100 or print("wrong data"))
        """

    func testAClientThatIgnoresTheMinimumIsRefusedUnderErrorAndServedUnderAllow() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let refused = try InteropEnvironment.serve(
            ["--filter=blocksize-policy", "memory", "1M", "blocksize-minimum=4K", "blocksize-error-policy=error"],
            run: command)
        assertSucceeded(refused, "error policy")
        XCTAssertEqual(refused.stdout.split(separator: "\n"), ["aligned ok", "unaligned EINVAL", "readback EINVAL"])
        // allow over the blocksize filter: the misaligned request is read-modify-written below.
        let served = try InteropEnvironment.serve(
            ["--filter=blocksize-policy", "--filter=blocksize", "memory", "1M", "blocksize-minimum=4K", "minblock=4K"],
            run: command)
        assertSucceeded(served, "allow policy")
        XCTAssertEqual(served.stdout.split(separator: "\n"), ["aligned ok", "unaligned ok", "readback ok"])
    }

    /// Under the default `allow` policy the advertised maximum is a hint: a 128 KiB read over
    /// `blocksize-maximum=64K` from a client that ignores it is answered, as nbdkit answers it; under
    /// `error` both refuse it with EINVAL.
    func testAReadAboveTheAdvertisedMaximumIsServedUnderAllowAsByNbdkit() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(
            """
            import nbd, sys, errno
            h = nbd.NBD()
            h.set_strict_mode(0)
            h.connect_uri(sys.argv[1])
            print("maximum", h.get_block_size(nbd.SIZE_MAXIMUM))
            try:
                print("read", len(h.pread(131072, 0)))
            except nbd.Error as e:
                print("read", errno.errorcode.get(e.errnum, e.errnum))
            """, in: directory)
        for (policy, expected) in [("allow", ["maximum 65536", "read 131072"]), ("error", ["maximum 65536", "read EINVAL"])] {
            let arguments = [
                "--filter=blocksize-policy", "memory", "1M", "blocksize-maximum=64K", "blocksize-error-policy=\(policy)",
            ]
            // nbdkit's --run sets $uri as a shell variable, not in the environment: pass it on.
            let ours = try InteropEnvironment.serve(arguments, run: command + " \"$uri\"")
            assertSucceeded(ours, "nbd-serve, \(policy)")
            let theirs = try InteropEnvironment.run(
                "/usr/bin/nbdkit", ["-U", "-"] + arguments + ["--run", command + " \"$uri\""])
            assertSucceeded(theirs, "nbdkit, \(policy)")
            XCTAssertEqual(ours.stdout.split(separator: "\n"), expected.map { Substring($0) }, "nbd-serve, \(policy)")
            XCTAssertEqual(theirs.stdout.split(separator: "\n"), expected.map { Substring($0) }, "nbdkit, \(policy)")
        }
    }

    func testAWriteLargerThanBlocksizeWriteDisconnectClosesTheConnection() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(
            """
            import nbd, os
            h = nbd.NBD()
            h.set_strict_mode(0)
            h.connect_uri(os.environ["uri"])
            h.pwrite(b"s" * 32768, 0)
            print("small ok")
            try:
                h.pwrite(b"b" * 65536, 0)
                print("large ok")
            except nbd.Error as e:
                print("large failed")
            print("connected" if h.aio_is_ready() else "disconnected")
            """, in: directory)
        let result = try InteropEnvironment.serve(
            ["--filter=blocksize-policy", "memory", "1M", "blocksize-write-disconnect=32K"], run: command)
        assertSucceeded(result, "write disconnect")
        XCTAssertEqual(result.stdout.split(separator: "\n"), ["small ok", "large failed", "disconnected"])
        XCTAssertTrue(result.stderr.contains("disconnecting"), result.stderr)
    }
}

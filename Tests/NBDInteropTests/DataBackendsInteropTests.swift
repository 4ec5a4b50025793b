import Foundation
import XCTest

/// The test-data backends (null, zero, full, ones, pattern, random, sparse-random, data, split)
/// through nbd-serve with real clients, and the same command lines on nbdkit 1.32 giving the same
/// answers: size, flags, bytes, block status, and what writes, zeroes and trims are answered.
final class DataBackendsInteropTests: XCTestCase {
    /// A libnbd script that prints what a client can learn about an export, one fact per line.
    /// Extents are merged (servers may split runs differently); errors print as errno names.
    private static let probe = """
        import nbd, sys, errno, hashlib
        h = nbd.NBD()
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        h.connect_uri(sys.argv[1])
        size = h.get_size()
        print("size", size)
        for name in ["is_read_only", "can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
                     "can_multi_conn", "can_cache"]:
            print(name, getattr(h, name)())
        def attempt(what, call):
            try:
                call()
                print(what, "ok")
            except nbd.Error as e:
                print(what, errno.errorcode.get(e.errnum, e.errnum))
        digest = hashlib.sha256()
        for offset in range(0, min(size, 32 << 20), 1 << 20):
            digest.update(h.pread(min(1 << 20, size - offset), offset))
        print("sha256", digest.hexdigest())
        # "aligned" skips the reads that start inside a 4 KiB block (sparse-random's differ; see
        # Backends.md); "sparse" skips block status (the data backend's page size differs).
        mode = sys.argv[2]
        for offset, count in [(0, 16), (5, 11), (4093, 7), (size - 9, 9)]:
            if mode == "aligned" and offset % 4096 != 0:
                continue
            if 0 <= offset and offset + count <= size and count > 0:
                print("read", offset, h.pread(count, offset).hex())
        if h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION) and size > 0 and mode != "sparse":
            runs = []
            offset = 0
            while offset < size:
                got = []
                h.block_status(min(size - offset, 1 << 30), offset,
                               lambda ctx, off, entries, err: got.extend(entries))
                for i in range(0, len(got), 2):
                    length, flags = got[i], got[i + 1]
                    length = min(length, size - offset)
                    if runs and runs[-1][1] == flags:
                        runs[-1][0] += length
                    else:
                        runs.append([length, flags])
                    offset += length
                    if offset >= size:
                        break
            print("extents", runs[:40])
        if not h.is_read_only() and size >= 512:
            same = h.pread(512, 0)
            attempt("write-same", lambda: h.pwrite(same, 0))
            attempt("write-other", lambda: h.pwrite(bytes(b ^ 0x5a for b in same), 0))
            if h.can_zero():
                attempt("zero", lambda: h.zero(512, 0))
                if h.can_fast_zero():
                    attempt("fast-zero", lambda: h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO))
            if h.can_trim():
                attempt("trim", lambda: h.trim(512, 0))
            if h.can_flush():
                attempt("flush", lambda: h.flush())
            print("after", hashlib.sha256(h.pread(min(size, 1 << 20), 0)).hexdigest())
        """

    /// What the probe compares.
    private enum Mode: String {
        /// Everything.
        case all
        /// Everything but reads that start inside a 4 KiB block.
        case aligned
        /// Everything but block status.
        case sparse
    }

    /// Runs `arguments` on nbd-serve and on nbdkit 1.32 with the probe and requires the same output.
    /// Both servers run from `/bin/sh` with `environment` exported, so `$VAR`s reach them.
    private func assertSameAnswers(
        _ arguments: [String], mode: Mode = .all, environment: [String: String] = [:],
        prepare: (() throws -> Void)? = nil, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(Self.probe, in: directory) + " \"$uri\" \(mode.rawValue)"
        let exports = environment.map { "export \($0.key)=\(InteropEnvironment.shellQuoted($0.value)); " }.joined()
        let quoted = arguments.map(InteropEnvironment.shellQuoted).joined(separator: " ")
        var results: [InteropEnvironment.Result] = []
        for server in [try InteropEnvironment.nbdServe, "/usr/bin/nbdkit"] {
            try prepare?()
            results.append(
                try InteropEnvironment.run(
                    "/bin/sh",
                    [
                        "-c",
                        "\(exports)exec \(InteropEnvironment.shellQuoted(server)) -U - \(quoted) --run \(InteropEnvironment.shellQuoted(command))",
                    ]))
        }
        assertSucceeded(results[0], "nbd-serve \(arguments)", file: file, line: line)
        assertSucceeded(results[1], "nbdkit \(arguments)", file: file, line: line)
        XCTAssertEqual(
            results[0].stdout, results[1].stdout, "nbd-serve and nbdkit differ for \(arguments)", file: file, line: line
        )
        XCTAssertTrue(results[0].stdout.contains("sha256"), results[0].stdout, file: file, line: line)
    }

    func testNullZeroAndFullAnswerAsNbdkitsPlugins() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        try assertSameAnswers(["null", "1M"])
        try assertSameAnswers(["null"])
        try assertSameAnswers(["zero"])
        try assertSameAnswers(["full", "1M"])
        try assertSameAnswers(["-r", "null", "size=64K"])
    }

    func testPatternAnswersAsNbdkitsPlugin() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        try assertSameAnswers(["pattern", "2M"])
        try assertSameAnswers(["pattern", "size=1001"])
        // nbdkit 1.32 serves an empty export when size= is left out (its manual says it is required).
        try assertSameAnswers(["pattern"])
        try assertSameAnswers(["random"])
    }

    func testRandomAndSparseRandomServeNbdkitsDataForTheSameSeed() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        try assertSameAnswers(["random", "64K", "seed=42"])
        try assertSameAnswers(["sparse-random", "8M", "seed=7", "percent=30", "runlength=262144"])
        try assertSameAnswers(
            ["sparse-random", "size=1M", "seed=3", "percent=50", "runlength=65536", "random-content=true"],
            mode: .aligned)
    }

    func testDataStringsServeNbdkitsBytes() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("blob").path
        try Data("a small file\n".utf8).write(to: URL(fileURLWithPath: file))
        try assertSameAnswers(["data", "( 0x55 0xAA )*2048"])
        try assertSameAnswers(["data", #"( "Hello" )*2000"#, "size=8192"])
        try assertSameAnswers(
            [
                "data",
                """
                  @0x1be    # the first partition entry
                    0 0 2 0 0x83 0x20 0x20 0 le32:1 le32:0x7ff
                  @0x1fe 0x55 0xaa
                """, "size=1M",
            ], mode: .sparse)
        try assertSameAnswers(["data", "0 1 2 3 @^0x200 @-2 le16:0xaa55 be32:7 le64:0x0102030405060708 @+3 017"])
        try assertSameAnswers(["data", "<\(file) @^512 <\(file)[2:7]*3 @^512 <\(file)"])
        try assertSameAnswers([
            "data", #" ( 0x55 0xAA ) -> \sig ( @0x1fe \sig ) -> \sector \sector \sector 1 2 3 @0 ( @2 ) "#,
        ])
        try assertSameAnswers(
            ["data", "$PATTERN*16 ( 1 2 3 )[1:]*2 \"\\x41\\t\\\"\""], mode: .sparse,
            environment: ["PATTERN": "0x55 0xAA"])
        // A variable on the command line, nested in another, wins over the environment.
        try assertSameAnswers(
            ["data", "$outer*4", "outer=( $PATTERN 9 )*2", "PATTERN=1 2"], environment: ["PATTERN": "0x55 0xAA"])
        try assertSameAnswers(["data", "base64=MTIz", "size=1M"], mode: .sparse)
        try assertSameAnswers(
            ["data", "<( i=0; while :; do printf '%04d' $i; i=$((i+1)); done )[:4096] <(echo '(x)')*3"])
        try assertSameAnswers(["data", "raw=Hello, world!"])
        try assertSameAnswers(["data", "1 2 3", "allocator=malloc"])
    }

    func testSplitServesFilesEndToEndAsNbdkitReadsThem() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let paths = (1...3).map { directory.appendingPathComponent("part\($0)").path }
        // Fresh files for each server (the probe writes). The probe writes, zeroes and trims only in
        // the first file: nbdkit 1.32's split writes the pieces after the first file at the wrong
        // place (see Backends.md).
        let prepare = {
            for (index, path) in paths.enumerated() {
                try Data((0..<(index + 1) * 70001).map { UInt8(truncatingIfNeeded: $0 * (index + 3)) })
                    .write(to: URL(fileURLWithPath: path))
            }
        }
        try assertSameAnswers(["split"] + paths, prepare: prepare)
        try assertSameAnswers(["-r", "split", paths[0], "file=\(paths[1])"], prepare: prepare)
        try assertSameAnswers(["split"])
    }

    /// Command lines nbdkit 1.32 refuses at start are refused by nbd-serve too, with a message naming
    /// the parameter.
    func testBadCommandLinesAreRefusedByBothServers() throws {
        try InteropEnvironment.require("nbdkit")
        let lines: [([String], String)] = [
            (["full"], "size"), (["zero", "1M"], "plain argument"),
            (["random", "1M", "seed=x"], "seed=x"), (["sparse-random", "1M", "percent=101"], "percent=101"),
            (["sparse-random", "1M", "runlength=0"], "runlength=0"), (["data", "1", "2"], "data= is given 2 times"),
            (["data", "256"], "0 to 255"), (["data", "@^3"], "power of 2"), (["data", "( 1"], "unmatched"),
            (["data", "1", "raw=x"], "only one of"), (["data", "1", "allocator=nonsense"], "allocator=nonsense"),
            (["null", "1M", "colour=blue"], "colour"),
            (["split", "/nonexistent/part1"], "/nonexistent/part1"),
        ]
        for (arguments, text) in lines {
            let ours = try InteropEnvironment.serve(arguments, run: "true")
            let theirs = try InteropEnvironment.run("/usr/bin/nbdkit", ["-U", "-"] + arguments + ["--run", "true"])
            XCTAssertNotEqual(ours.status, 0, "nbd-serve accepted \(arguments)")
            XCTAssertNotEqual(theirs.status, 0, "nbdkit accepted \(arguments)")
            XCTAssertTrue(ours.stderr.contains(text), "\(arguments): '\(ours.stderr)' does not mention '\(text)'")
        }
    }

    /// The ones backend is newer than nbdkit 1.32 here, so it is checked against its documented bytes.
    func testOnesReadsItsByteThroughNbdinfoAndNbdcopy() throws {
        try InteropEnvironment.require("nbdcopy", "nbdinfo")
        let result = try InteropEnvironment.serve(
            ["ones", "1M", "byte=0x41"],
            run: "nbdinfo --size \"$uri\"; nbdcopy \"$uri\" - | head -c 5; echo; nbdinfo --map \"$uri\"")
        assertSucceeded(result, "ones")
        let lines = result.stdout.split(separator: "\n").map {
            $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        }
        XCTAssertEqual(lines, ["1048576", "AAAAA", "0 1048576 0 data"])
    }

    /// nbdcopy onto the same random and sparse-random exports checks every byte it writes (a
    /// mismatch would fail with EIO), as nbdkit's manual suggests for testing copying tools.
    func testNbdcopyOntoItselfSucceedsForRandomAndSparseRandom() throws {
        try InteropEnvironment.require("nbdcopy")
        // random has no flush (as in nbdkit), sparse-random has one for nbdcopy --flush.
        for (arguments, flush) in [
            (["random", "256K", "seed=1"], ""), (["sparse-random", "32M", "seed=5", "runlength=1048576"], "--flush"),
        ] {
            let result = try InteropEnvironment.serve(
                arguments, run: "nbdcopy \(flush) \"$uri\" \"$uri\" && echo copied")
            assertSucceeded(result, "\(arguments)")
            XCTAssertEqual(result.stdout, "copied\n")
        }
    }

    /// qemu-img sees the pattern's bytes and the full backend's ENOSPC as a user would.
    func testQemuIoReadsThePatternAndSeesFullsENOSPC() throws {
        try InteropEnvironment.require("qemu-io")
        let pattern = try InteropEnvironment.serve(
            ["pattern", "1M"], run: "qemu-io -r -f raw \"$uri\" -c 'read -v 0x28 8'")
        assertSucceeded(pattern, "pattern")
        XCTAssertTrue(pattern.stdout.contains("00000028:  00 00 00 00 00 00 00 28"), pattern.stdout)
        let full = try InteropEnvironment.serve(
            ["full", "1M"], run: "qemu-io -f raw \"$uri\" -c 'write 0 4096' 2>&1; true")
        assertSucceeded(full, "full")
        XCTAssertTrue(full.stdout.contains("No space left on device"), full.stdout)
    }
}

import Foundation
import XCTest

/// nofilter, swab, checkwrite, cacheextents, extentlist and partition run with the same command line
/// on nbdkit (1.32 has them all) and on nbd-serve, and must give a real client the same answers;
/// readonly and rotational (newer than nbdkit 1.32) as nbdinfo and python libnbd see them.
final class DataFiltersInteropTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// A Python libnbd script, run with the URI as its first argument (nbdkit's `--run` does not
    /// export `$uri`).
    private func python(_ body: String, name: String = "check.py") throws -> String {
        let file = path(name)
        let prologue = """
            import nbd, sys, errno
            def err(e):
                return errno.errorcode.get(e.errnum, e.errnum)
            h = nbd.NBD()
            h.set_strict_mode(0)
            h.connect_uri(sys.argv[1])

            """
        try (prologue + body).write(toFile: file, atomically: true, encoding: .utf8)
        return "/usr/bin/python3 \(InteropEnvironment.shellQuoted(file)) \"$uri\""
    }

    /// Runs nbd-serve and nbdkit with the same arguments and command, each given the name of its
    /// own copy of any file the run changes (`ours` or `theirs`); requires both to succeed with the
    /// same output, and returns it.
    @discardableResult
    private func assertSameAnswers(
        _ arguments: (String) -> [String], run command: (String) -> String,
        setup: ((String) throws -> Void)? = nil, file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        try setup?("ours")
        try setup?("theirs")
        let ours = try InteropEnvironment.serve(arguments("ours"), run: command("ours"))
        let theirs = try InteropEnvironment.run(
            "/usr/bin/nbdkit", ["-U", "-"] + arguments("theirs") + ["--run", command("theirs")])
        assertSucceeded(ours, "nbd-serve \(arguments("ours"))", file: file, line: line)
        assertSucceeded(theirs, "nbdkit \(arguments("theirs"))", file: file, line: line)
        XCTAssertEqual(
            ours.stdout, theirs.stdout, "nbd-serve and nbdkit differ for \(arguments("ours"))", file: file, line: line)
        return ours.stdout
    }

    /// A file of `size` bytes, each byte its offset modulo 251 (so no word reads the same reversed).
    private func patternFile(_ name: String, size: Int) throws {
        let bytes = (0..<size).map { UInt8($0 % 251) }
        try Data(bytes).write(to: directory.appendingPathComponent(name))
    }

    func testNofilterAndSwabAnswerAsNbdkit() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        let command = try python(
            """
            print("size", h.get_size())
            print("head", bytes(h.pread(16, 0)).hex())
            h.pwrite(bytes(range(100, 108)), 8)
            print("back", bytes(h.pread(8, 8)).hex())
            for (count, offset) in [(3, 4), (8, 2)]:
                try:
                    h.pread(count, offset)
                    print("unaligned read", count, offset, "ok")
                except nbd.Error as e:
                    print("unaligned read", count, offset, err(e))
            h.shutdown()
            print("file", open(sys.argv[2], "rb").read(16).hex())
            """)
        let cases: [([String], [String])] = [
            (["--filter=nofilter"], []), (["--filter=swab"], []), (["--filter=swab"], ["swab-bits=32"]),
            (["--filter=nofilter", "--filter=swab"], ["swab-bits=64"]),
        ]
        // Not compared: swab-bits=8, where nbdkit 1.32 writes a buffer it never filled (zeroes reach
        // the file); nbd-serve passes such writes through unchanged (see Filters.md).
        for (filters, parameters) in cases {
            let output = try assertSameAnswers(
                { copy in filters + ["file", "file=\(self.path(copy))"] + parameters },
                run: { copy in command + " " + InteropEnvironment.shellQuoted(self.path(copy)) },
                setup: { copy in try self.patternFile(copy, size: 4099) })
            if parameters == ["swab-bits=32"] {
                XCTAssertTrue(output.contains("head 03020100070605040b0a0908"), output)
                XCTAssertTrue(output.contains("size 4096"), output)
            }
        }
    }

    /// A 1 MiB sparse file whose first 64 KiB are the pattern.
    private func sparseFile(_ name: String) throws {
        try patternFile(name, size: 65536)
        let handle = try FileHandle(forWritingTo: directory.appendingPathComponent(name))
        try handle.truncate(atOffset: 1 << 20)
        try handle.close()
    }

    func testCheckwriteAnswersAsNbdkitAndNbdcopyOntoItselfSucceeds() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit", "nbdcopy")
        let command = try python(
            """
            print("ro", h.is_read_only(), "multi-conn", h.can_multi_conn(), "fast-zero", h.can_fast_zero())
            h.pwrite(bytes(h.pread(4096, 4096)), 4096)
            print("same write ok")
            def attempt(name, call):
                try:
                    call()
                    print(name, "ok")
                except nbd.Error as e:
                    print(name, err(e))
            attempt("different write", lambda: h.pwrite(b"x" * 512, 0))
            attempt("zero over data", lambda: h.zero(4096, 0))
            attempt("trim over data", lambda: h.trim(4096, 8192))
            attempt("zero over hole", lambda: h.zero(65536, 131072))
            attempt("fast zero over data", lambda: h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO))
            attempt("flush", lambda: h.flush())
            h.shutdown()
            """)
        try assertSameAnswers(
            { copy in ["--filter=checkwrite", "file", "file=\(self.path(copy))"] },
            run: { copy in command + " && nbdcopy \"$uri\" \"$uri\" && echo copied" },
            setup: { copy in try self.sparseFile(copy) })
        let original = try Data(contentsOf: directory.appendingPathComponent("ours"))
        XCTAssertEqual(original.prefix(3), Data([0, 1, 2]), "nothing was written below")
    }

    func testCacheextentsAndExtentlistMapsAsNbdkit() throws {
        try InteropEnvironment.require("nbdinfo", "nbdkit")
        try sparseFile("sparse")
        let cached = try assertSameAnswers(
            { _ in ["--filter=cacheextents", "file", "file=\(self.path("sparse"))"] },
            run: { _ in "nbdinfo --map \"$uri\"" })
        XCTAssertTrue(cached.contains("data") && cached.contains("hole"), cached)
        try "0 1M\n2M 1M hole,zero\n5M 512K 2\n".write(toFile: path("list"), atomically: true, encoding: .utf8)
        let listed = try assertSameAnswers(
            { _ in ["-r", "--filter=extentlist", "memory", "8M", "extentlist=\(self.path("list"))"] },
            run: { _ in "nbdinfo --map \"$uri\"" })
        XCTAssertTrue(listed.contains("1048576    0  data"), listed)
    }

    func testPartitionServesMBRAndGPTPartitionsAsNbdkit() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit", "sfdisk", "sgdisk")
        let sfdisk = try XCTUnwrap(InteropEnvironment.path(of: "sfdisk"))
        let sgdisk = try XCTUnwrap(InteropEnvironment.path(of: "sgdisk"))
        let made = try InteropEnvironment.shell(
            """
            truncate -s 32M mbr.img gpt.img
            printf 'label: dos\nstart=2048, size=4096, type=83\nstart=8192, size=16384, type=5\nstart=10240, size=2048, type=83\nstart=14336, size=4096, type=83\n' | \(sfdisk) -q mbr.img
            \(sgdisk) -o -n 1:2048:+1M -n 2:0:+2M -n 3:0:+1M gpt.img >/dev/null
            for s in 2048 10240 14336; do printf "MBR at $s" | dd of=mbr.img bs=512 seek=$s conv=notrunc status=none; done
            for s in 2048 4096 8192; do printf "GPT at $s" | dd of=gpt.img bs=512 seek=$s conv=notrunc status=none; done
            """, in: directory)
        assertSucceeded(made, "sfdisk and sgdisk")
        let command = try python(
            """
            print("size", h.get_size(), "head", bytes(h.pread(12, 0)).rstrip(b"\\0"))
            """)
        var outputs: [String] = []
        for (disk, number) in [("mbr", 1), ("mbr", 5), ("mbr", 6), ("gpt", 1), ("gpt", 2), ("gpt", 3)] {
            outputs.append(
                try assertSameAnswers(
                    { _ in ["-r", "--filter=partition", "file", "file=\(self.path(disk + ".img"))", "partition=\(number)"] },
                    run: { _ in command }))
        }
        XCTAssertEqual(
            outputs,
            [
                "size 2097152 head b'MBR at 2048'\n", "size 1048576 head b'MBR at 10240'\n",
                "size 2097152 head b'MBR at 14336'\n", "size 1048576 head b'GPT at 2048'\n",
                "size 2097152 head b'GPT at 4096'\n", "size 1048576 head b'GPT at 8192'\n",
            ])
        // A partition that is not there: both refuse the connection, so the client fails.
        for (disk, number) in [("mbr", 2), ("mbr", 7), ("gpt", 4)] {
            let arguments = ["-r", "--filter=partition", "file", "file=\(path(disk + ".img"))", "partition=\(number)"]
            let ours = try InteropEnvironment.serve(arguments, run: command)
            let theirs = try InteropEnvironment.run("/usr/bin/nbdkit", ["-U", "-"] + arguments + ["--run", command])
            XCTAssertNotEqual(ours.status, 0, "nbd-serve \(arguments)")
            XCTAssertNotEqual(theirs.status, 0, "nbdkit \(arguments)")
            XCTAssertTrue(ours.stderr.contains("partition"), ours.stderr)
        }
        // Bad parameters are refused at start, naming the parameter.
        for parameter in ["partition=0", "partition=x", "partition-sectorsize=1k"] {
            let result = try InteropEnvironment.serve(
                ["--filter=partition", "file", "file=\(path("mbr.img"))", "partition=1", parameter], run: "true")
            XCTAssertNotEqual(result.status, 0, parameter)
            XCTAssertTrue(result.stderr.contains(String(parameter.prefix { $0 != "=" })), result.stderr)
        }
    }

    func testReadonlyAndRotationalAsNbdinfoAndLibnbdSeeThem() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdinfo")
        func export(_ arguments: [String]) throws -> [String: Any] {
            let result = try InteropEnvironment.serve(arguments, run: "nbdinfo --json \"$uri\"")
            assertSucceeded(result, "nbdinfo \(arguments)")
            let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            return try XCTUnwrap((json?["exports"] as? [[String: Any]])?.first, result.stdout)
        }
        XCTAssertEqual(try export(["--filter=readonly", "memory", "1M"])["is_read_only"] as? Bool, true)
        XCTAssertEqual(try export(["--filter=rotational", "memory", "1M"])["is_rotational"] as? Bool, true)
        XCTAssertEqual(
            try export(["--filter=rotational", "memory", "1M", "rotational=false"])["is_rotational"] as? Bool, false)
        let switchFile = path("ro")
        let command = try python(
            """
            import os
            print("ro", h.is_read_only())
            h.pwrite(b"a" * 512, 0)
            open(sys.argv[2], "w").close()
            try:
                h.pwrite(b"b" * 512, 0)
            except nbd.Error as e:
                print("while the file exists", err(e))
            os.unlink(sys.argv[2])
            h.pwrite(b"c" * 512, 0)
            print("after", bytes(h.pread(1, 0)))
            """)
        let result = try InteropEnvironment.serve(
            ["--filter=readonly", "memory", "1M", "readonly-file=\(switchFile)"],
            run: command + " " + InteropEnvironment.shellQuoted(switchFile))
        assertSucceeded(result, "readonly-file")
        XCTAssertEqual(result.stdout, "ro False\nwhile the file exists EPERM\nafter b'c'\n")
        let refused = try InteropEnvironment.serve(["--filter=rotational", "memory", "1M", "rotational=maybe"], run: "true")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("rotational=maybe"), refused.stderr)
    }

    func testDdrescueFailsUnrescuedReadsWithEIOAsNbdkit() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        try patternFile("rescued.img", size: 1 << 20)
        let mapfile = """
            # Mapfile. Created by GNU ddrescue version 1.27
            # current_pos  current_status  current_pass
            0x00020000     +               1
            #      pos        size  status
            0x00000000  0x00010000  +
            0x00010000  0x00000200  -
            0x00010200  0x0000FE00  +
            0x00020000  0x000E0000  ?

            """
        try mapfile.write(toFile: path("rescued.map"), atomically: true, encoding: .utf8)
        let command = try python(
            """
            print("ro", h.is_read_only(), "cache", h.can_cache())
            for (count, offset) in [(4096, 0), (512, 65536), (4096, 65024), (4096, 0x10200), (512, 0x20000)]:
                try:
                    print(count, offset, bytes(h.pread(count, offset))[:2].hex())
                except nbd.Error as e:
                    print(count, offset, err(e))
            try:
                h.pwrite(b"x", 0)
            except nbd.Error as e:
                print("write", err(e))
            """)
        let output = try assertSameAnswers(
            { _ in ["--filter=ddrescue", "file", "file=\(self.path("rescued.img"))", "ddrescue-mapfile=\(self.path("rescued.map"))"] },
            run: { _ in command })
        XCTAssertEqual(
            output,
            "ro True cache False\n4096 0 0001\n512 65536 EIO\n4096 65024 EIO\n4096 66048 2324\n512 131072 EIO\nwrite EPERM\n")
    }

    func testMapSwapsSectorsAndFailsBeyondTheEndWithEIO() throws {
        try InteropEnvironment.require("python3-libnbd")
        try patternFile("disk.img", size: 4096)
        let command = try python(
            """
            data = open(sys.argv[2], "rb").read()
            print(bytes(h.pread(512, 0)) == data[512:1024], bytes(h.pread(512, 512)) == data[0:512])
            print(bytes(h.pread(1024, 1024)) == data[1024:2048])
            try:
                h.pread(512, 3584)
            except nbd.Error as e:
                print("beyond", err(e))
            """)
        let result = try InteropEnvironment.serve(
            ["--filter=map", "file", "file=\(path("disk.img"))", "map=0-511:512", "map=512-1023:0", "map=3584-4095:4000"],
            run: command + " " + InteropEnvironment.shellQuoted(path("disk.img")))
        assertSucceeded(result, "map")
        XCTAssertEqual(result.stdout, "True True\nTrue\nbeyond EIO\n")
        let refused = try InteropEnvironment.serve(["--filter=map", "memory", "1M", "map=9-1:0"], run: "true")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("map=9-1:0"), refused.stderr)
    }

    func testCountReportsTheBytesOfTheRunAndEvilCorruptsReadsOnly() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdcopy")
        let command = try python(
            """
            h.pread(4096, 0)
            h.pwrite(b"a" * 512, 0)
            h.zero(8192, 65536)
            h.trim(1024, 131072)
            """)
        let counted = try InteropEnvironment.serve(["--filter=count", "memory", "1M"], run: command)
        assertSucceeded(counted, "count")
        XCTAssertTrue(
            counted.stderr.contains("nbd-serve: count bytes: read 4096, written 512, zeroed 8192, trimmed 1024"),
            counted.stderr)
        // Cosmic rays on a read of 1 MiB of zeroes at 1 in 1000 bits: about 8389 flipped bits;
        // nbdcopy below noextents (so it reads the holes too) copies them, and the export is unchanged.
        let copy = path("copy.img")
        let flips = try python(
            """
            print(sum(bin(b).count("1") for b in bytes(h.pread(1 << 20, 0))))
            """, name: "flips.py")
        let evil = try InteropEnvironment.serve(
            [
                "--filter=evil", "--filter=noextents", "memory", "1M", "evil=cosmic-rays", "evil-probability=1:1000",
                "evil-seed=1",
            ],
            run: "nbdcopy \"$uri\" \(InteropEnvironment.shellQuoted(copy)) && \(flips)")
        assertSucceeded(evil, "nbdcopy through evil")
        let read = Int(evil.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        XCTAssertTrue((7800...9000).contains(read), "\(read) bits flipped in a read")
        let bits = try Data(contentsOf: URL(fileURLWithPath: copy)).reduce(0) { $0 + $1.nonzeroBitCount }
        XCTAssertTrue((7800...9000).contains(bits), "\(bits) bits flipped")
    }

    func testSpinningIsRotationalAndServesEveryRequest() throws {
        try InteropEnvironment.require("python3-libnbd")
        let command = try python(
            """
            print("rotational", h.is_rotational(), "multi-conn", h.can_multi_conn())
            for i in range(8):
                h.pwrite(bytes([i + 1]) * 512, (i * 7919 % 64) << 20)
            print(all(bytes(h.pread(512, (i * 7919 % 64) << 20)) == bytes([i + 1]) * 512 for i in range(8)))
            """)
        let result = try InteropEnvironment.serve(
            [
                "--filter=spinning", "memory", "64M", "heads=2", "min-seek-time=1ms", "half-seek-time=2ms",
                "max-seek-time=3ms",
            ], run: command)
        assertSucceeded(result, "spinning")
        XCTAssertEqual(result.stdout, "rotational True multi-conn False\nTrue\n")
        let refused = try InteropEnvironment.serve(["--filter=spinning", "memory", "1M", "heads=100"], run: "true")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("heads=100"), refused.stderr)
    }

    /// The scan's prefetches, as the log filter below it records them, are those of nbdkit.
    func testScanPrefetchesTheDiskAsNbdkit() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        let command = try python(
            """
            import re, time
            # The scan runs in the background: wait for it (bounded) by watching the log.
            deadline = time.monotonic() + 60
            lines = []
            while time.monotonic() < deadline:
                lines = [re.sub(r"^.* connection=1 ", "", l) for l in open(sys.argv[2]) if " Cache id=" in l]
                if len(lines) >= 4:
                    break
                time.sleep(0.01)
            print("".join(lines), end="")
            """)
        try assertSameAnswers(
            { copy in
                [
                    "--filter=scan", "--filter=log", "memory", "8M", "logfile=\(self.path(copy + ".log"))",
                    "scan-size=2M",
                ]
            },
            run: { copy in command + " " + InteropEnvironment.shellQuoted(self.path(copy + ".log")) })
    }

    /// Each filter nbdkit 1.32 shares over `memory`, with good and bad parameters: nbd-serve accepts
    /// and refuses the same command lines as nbdkit and reports the same size.
    func testTheSameCommandLinesAreAcceptedAndRefusedAsByNbdkit() throws {
        try InteropEnvironment.require("nbdinfo", "nbdkit")
        try "0 64K\n".write(toFile: path("list"), atomically: true, encoding: .utf8)
        try "# map\n0x0 +\n0x0 0x100000 +\n".write(toFile: path("map"), atomically: true, encoding: .utf8)
        let cases: [[String]] = [
            ["--filter=nofilter", "memory", "1M"],
            ["--filter=swab", "memory", "1M"], ["--filter=swab", "memory", "1001", "swab-bits=32"],
            ["--filter=swab", "memory", "1M", "swab-bits=12"],
            ["--filter=checkwrite", "memory", "1M"], ["--filter=cacheextents", "memory", "1M"],
            ["--filter=extentlist", "memory", "1M", "extentlist=\(path("list"))"],
            ["--filter=extentlist", "memory", "1M"], ["--filter=extentlist", "memory", "1M", "extentlist=\(path("none"))"],
            ["--filter=partition", "memory", "1M"], ["--filter=partition", "memory", "1M", "partition=0"],
            ["--filter=partition", "memory", "1M", "partition=1"],
            ["--filter=scan", "memory", "1M"], ["--filter=scan", "memory", "1M", "scan-size=3K"],
            ["--filter=scan", "memory", "1M", "scan-forever=maybe"],
            ["--filter=ddrescue", "memory", "1M", "ddrescue-mapfile=\(path("map"))"],
        ]
        for arguments in cases {
            let ours = try InteropEnvironment.serve(arguments, run: "nbdinfo --size \"$uri\"")
            let theirs = try InteropEnvironment.run(
                "/usr/bin/nbdkit", ["-U", "-"] + arguments + ["--run", "nbdinfo --size \"$uri\""])
            XCTAssertEqual(ours.status == 0, theirs.status == 0, "\(arguments): nbd-serve \(ours.stderr) nbdkit \(theirs.stderr)")
            XCTAssertEqual(ours.stdout, theirs.stdout, "\(arguments)")
        }
        // The one difference: nbdkit 1.32 starts ddrescue without a mapfile (and then fails every
        // read); nbd-serve refuses the missing parameter at start.
        let missing = try InteropEnvironment.serve(["--filter=ddrescue", "memory", "1M"], run: "true")
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("ddrescue-mapfile=... is required"), missing.stderr)
    }
}

import Foundation
import XCTest

/// The sh and eval backends under real clients, and the same command lines on nbdkit: python
/// libnbd's view (flags, data, errno of each failure, extents), nbdinfo, nbdcopy and qemu-io must
/// get the same answers from both servers.
final class ScriptBackendInteropTests: XCTestCase {
    /// Prints what a client sees of the export at `$1`, then runs reads, writes, zeroes, trims,
    /// flushes and block status, printing each result or errno.
    static let client = #"""
        import hashlib, nbd, sys
        h = nbd.NBD()
        h.add_meta_context("base:allocation")
        h.connect_uri(sys.argv[1])
        print("size", h.get_size())
        for name in ["is_read_only", "can_flush", "can_trim", "can_zero", "can_fast_zero", "can_fua",
                     "can_multi_conn", "can_cache", "is_rotational", "can_df"]:
            print(name, getattr(h, name)())
        print("base:allocation", h.can_meta_context("base:allocation"))
        def attempt(what, f):
            try:
                result = f()
                print(what, "ok", "" if result is None else result)
            except nbd.Error as e:
                print(what, "errno", e.errnum)
        digest = lambda data: hashlib.sha256(data).hexdigest()[:16]
        attempt("read", lambda: digest(h.pread(65536, 0)))
        if not h.is_read_only():
            attempt("write", lambda: h.pwrite(bytes(range(256)) * 64, 4096))
            attempt("write-fua", lambda: h.pwrite(b"y" * 512, 8192, nbd.CMD_FLAG_FUA))
            attempt("zero", lambda: h.zero(1024, 4200))
            attempt("fast-zero", lambda: h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO))
            if h.can_trim():
                attempt("trim", lambda: h.trim(512, 0))
            if h.can_flush():
                attempt("flush", lambda: h.flush())
            attempt("read-back", lambda: digest(h.pread(65536, 0)))
        if h.can_meta_context("base:allocation"):
            extents = []
            def collect(context, offset, entries, error):
                extents.extend(entries)
                return 0
            attempt("block-status", lambda: h.block_status(65536, 0, collect))
            print("extents", extents)
        for offset in sys.argv[2:]:
            attempt("read@" + offset, lambda: len(h.pread(512, int(offset))))
        """#

    /// A file plugin for sh in the shape of nbdkit's example script: `file=`, dd, fallocate,
    /// extents in halves, per-connection handle directories.
    static let shFilePlugin = #"""
        #!/bin/sh
        f=$tmpdir/file
        case "$1" in
            config)
                [ "$2" = file ] || { echo "unknown parameter $2=$3" >&2; exit 1; }
                ln -sf "$(realpath "$3")" $f ;;
            config_complete) [ -L $f ] || { echo "file parameter missing" >&2; exit 1; } ;;
            thread_model) echo parallel ;;
            open) mktemp -d $tmpdir/handle-XXXXXX ;;
            get_size) stat -L -c '%s' $f || exit 1 ;;
            pread) dd iflag=skip_bytes,count_bytes skip=$4 count=$3 if=$f || exit 1 ;;
            pwrite) dd oflag=seek_bytes conv=notrunc seek=$4 of=$f || exit 1 ;;
            can_write) ;;
            trim) fallocate -p -o $4 -l $3 -n $f || exit 1 ;;
            can_trim) fallocate --help >/dev/null 2>&1 || exit 3 ;;
            zero)
                echo ENOTSUP >&2
                case ,$5, in
                    *,may_trim,*) fallocate -p -o $4 -l $3 -n $f || exit 1 ;;
                    *) fallocate -z -o $4 -l $3 -n $f || exit 1 ;;
                esac ;;
            can_zero) fallocate --help >/dev/null 2>&1 || exit 3 ;;
            can_cache) echo native ;;
            extents)
                echo "$4 $(($3/2)) 0"
                echo "$(($4+$3/2)) $(($3/2))" ;;
            can_extents) ;;
            magic_config_key) echo file ;;
            *) exit 2 ;;
        esac
        exit 0
        """#

    /// eval standing in for the file plugin, as nbdkit's manual page shows it, plus flush, trim,
    /// and errors chosen by offset.
    static let evalFileArguments = [
        "eval",
        #"config=ln -sf "$(realpath "$3")" $tmpdir/file"#,
        "get_size=stat -Lc %s $tmpdir/file",
        #"pread=case $4 in 1048064) echo ENOSPC no room >&2; exit 1 ;; 1047552) echo eperm >&2; exit 1 ;; 1047040) echo EINVALID >&2; exit 1 ;; 1046528) kill -9 $$ ;; esac; dd if=$tmpdir/file skip=$4 count=$3 iflag=count_bytes,skip_bytes"#,
        "pwrite=dd of=$tmpdir/file seek=$4 conv=notrunc oflag=seek_bytes",
        "flush=sync $tmpdir/file",
        "trim=fallocate -p -o $4 -l $3 -n $tmpdir/file",
    ]

    private var directory: URL!

    override func setUpWithError() throws {
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDown() {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    /// A 1 MiB disk image with a recognisable first 64 KiB, at `name` in the test's directory.
    private func makeDisk(_ name: String) throws -> String {
        let path = directory.appendingPathComponent(name).path
        var bytes = [UInt8](repeating: 0, count: 1 << 20)
        for index in 0..<65536 { bytes[index] = UInt8(truncatingIfNeeded: index * 31 + 7) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Runs the client against the same command line on nbd-serve and nbdkit (each with its own
    /// copy of the disk where `DISK` appears) and requires the same output and disk contents.
    private func compare(
        _ arguments: [String], readOffsets: [Int] = [], file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        let command = try InteropEnvironment.pythonCommand(Self.client, in: directory)
        let run = command + " \"$uri\" " + readOffsets.map(String.init).joined(separator: " ")
        let ourDisk = try makeDisk("ours.img")
        let theirDisk = try makeDisk("theirs.img")
        let ours = try InteropEnvironment.serve(
            arguments.map { $0.replacingOccurrences(of: "DISK", with: ourDisk) }, run: run)
        assertSucceeded(ours, "nbd-serve \(arguments)", file: file, line: line)
        let theirs = try InteropEnvironment.run(
            "/usr/bin/nbdkit",
            ["-U", "-"] + arguments.map { $0.replacingOccurrences(of: "DISK", with: theirDisk) } + ["--run", run])
        assertSucceeded(theirs, "nbdkit \(arguments)", file: file, line: line)
        XCTAssertEqual(ours.stdout, theirs.stdout, "nbd-serve, then nbdkit, for \(arguments)", file: file, line: line)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: ourDisk)), try Data(contentsOf: URL(fileURLWithPath: theirDisk)),
            "the disks after the run differ", file: file, line: line)
        return ours.stdout
    }

    func testEvalDiskOfZeroesAnswersAsOnNbdkit() throws {
        try InteropEnvironment.require("nbdkit", "python3-libnbd")
        let output = try compare(["eval", "get_size=echo 64M", "pread=dd if=/dev/zero count=$3 iflag=count_bytes"])
        XCTAssertTrue(output.contains("size 67108864\nis_read_only True\n"), output)
    }

    func testEvalFileCommandLineAnswersAsOnNbdkitWithTheSameErrnos() throws {
        try InteropEnvironment.require("nbdkit", "python3-libnbd")
        let output = try compare(
            Self.evalFileArguments + ["file=DISK"], readOffsets: [1048064, 1047552, 1047040, 1046528, 0])
        XCTAssertTrue(output.contains("read@1048064 errno 28\n"), output)
        XCTAssertTrue(output.contains("read@1047552 errno 1\n"), output)
        XCTAssertTrue(output.contains("read@1047040 errno 5\n"), output)
        XCTAssertTrue(output.contains("read@1046528 errno 5\n"), "killed by a signal: EIO, and the server lives on")
        XCTAssertTrue(output.contains("read@0 ok 512\n"), output)
        XCTAssertTrue(output.contains("fast-zero errno 95\n"), output)
    }

    func testShFilePluginAnswersAsOnNbdkit() throws {
        try InteropEnvironment.require("nbdkit", "python3-libnbd")
        let script = directory.appendingPathComponent("example.sh")
        try Self.shFilePlugin.write(to: script, atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(script.path, 0o755), 0)
        let output = try compare(["sh", script.path, "file=DISK"])
        XCTAssertTrue(output.contains("can_cache True\n"), output)
        XCTAssertTrue(output.contains("extents [65536, 0]\n"), "two data halves, merged by both servers: \(output)")
        // The file= prefix left out: the script's magic_config_key names the key of a plain argument.
        XCTAssertEqual(try compare(["sh", script.path, "DISK"]), output)
    }

    /// `list_exports` and `default_export`: nbdinfo --list sees the same names and descriptions, and
    /// the export `""` opens under the default export's name, on both servers.
    func testListExportsAndDefaultExportAnswerAsOnNbdkit() throws {
        try InteropEnvironment.require("nbdkit", "nbdinfo")
        let arguments = [
            "eval", "list_exports=printf 'INTERLEAVED\\ndisk1\\nfirst disk\\ndisk22\\nsecond disk\\n'",
            "default_export=echo disk22", #"open=echo "$3""#, #"get_size=echo "$2" | wc -c"#,
            "pread=dd if=/dev/zero count=$3 iflag=count_bytes",
        ]
        let run = #"nbdinfo --list "$uri" | grep -E 'export=|description:|export-size:'; nbdinfo "$uri" | grep -E 'export=|export-size:'"#
        let ours = try InteropEnvironment.serve(arguments, run: run)
        assertSucceeded(ours, "nbd-serve eval with list_exports")
        let theirs = try InteropEnvironment.run("/usr/bin/nbdkit", ["-U", "-"] + arguments + ["--run", run])
        assertSucceeded(theirs, "nbdkit eval with list_exports")
        XCTAssertEqual(ours.stdout, theirs.stdout, "nbd-serve, then nbdkit")
        XCTAssertTrue(ours.stdout.contains("description: second disk"), ours.stdout)
        XCTAssertTrue(
            ours.stdout.hasSuffix("export=\"disk22\":\n\texport-size: 7\n"),
            "\"\" opened and named as disk22 (7 bytes with the newline): \(ours.stdout)")
    }

    /// `nbdkit sh -` reads the script from standard input; the same here-document on both, and
    /// nbdinfo and nbdcopy as clients.
    func testInlineShScriptFromStandardInputServesNbdinfoAndNbdcopy() throws {
        try InteropEnvironment.require("nbdkit", "nbdinfo", "nbdcopy")
        let disk = try makeDisk("source.img")
        let result = try InteropEnvironment.shell(
            #"""
            for server in "$SERVE" nbdkit; do
                "$server" -U - sh - --run 'nbdinfo --json "$uri" | grep -E "export-size|is_read_only|can_write|can_extents"; nbdcopy "$uri" "$DIR/copy.img"' <<'EOF'
            case "$1" in
                get_size) stat -L -c %s "$DISK" ;;
                pread) dd iflag=skip_bytes,count_bytes skip=$4 count=$3 if="$DISK" ;;
                *) exit 2 ;;
            esac
            EOF
                cmp "$DISK" "$DIR/copy.img"
                rm "$DIR/copy.img"
                echo "--"
            done
            """#, in: directory, exports: ["DISK": InteropEnvironment.shellQuoted(disk)])
        assertSucceeded(result, "sh - on nbd-serve and nbdkit")
        let halves = result.stdout.components(separatedBy: "--\n")
        XCTAssertEqual(halves.count, 3, result.stdout)
        XCTAssertEqual(halves[0], halves[1], "nbd-serve, then nbdkit")
        XCTAssertTrue(halves[0].contains("1048576"), result.stdout)
    }

    /// nbdkit's error test: qemu-io reads the errno a script names on stderr.
    func testQemuIoSeesTheErrnoTheScriptNamesAsOnNbdkit() throws {
        try InteropEnvironment.require("nbdkit", "qemu-io")
        for (failure, expected) in [
            ("printf ENOMEM >&2; exit 1", "Cannot allocate memory"),
            ("echo eperm >&2; exit 1", "Operation not permitted"),
            ("printf 'ESHUTDOWN\\nline one\\n' >&2; exit 1", "transport endpoint shutdown"),
            ("echo EPIPE >&2; exit 1", "Input/output error"),
        ] {
            let arguments = ["eval", "get_size=echo 64K", "pread=" + failure]
            let run = "qemu-io -r -f raw -c 'r 0 1' \"$uri\""
            let ours = try InteropEnvironment.serve(arguments, run: run)
            let theirs = try InteropEnvironment.run("/usr/bin/nbdkit", ["-U", "-"] + arguments + ["--run", run])
            XCTAssertEqual(ours.stdout, theirs.stdout, failure)
            XCTAssertTrue(ours.stdout.contains(expected), "\(failure): \(ours.stdout)")
        }
    }

    func testBadParametersAreRefusedAtStartNamingTheParameter() throws {
        try InteropEnvironment.require("nbdinfo")
        let noSize = try InteropEnvironment.serve(["eval", "pread=exit 1"], run: "nbdinfo \"$uri\"")
        XCTAssertNotEqual(noSize.status, 0)
        XCTAssertTrue(noSize.stderr.contains("get_size="), noSize.stderr)
        let unknown = try InteropEnvironment.serve(["eval", "get_size=echo 1", "disk=x"], run: "nbdinfo \"$uri\"")
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("disk=x"), unknown.stderr)
        let absent = try InteropEnvironment.serve(
            ["sh", directory.appendingPathComponent("absent.sh").path], run: "true")
        XCTAssertNotEqual(absent.status, 0)
        XCTAssertTrue(absent.stderr.contains("script="), absent.stderr)
    }

    func testTmpdirExistsWhileServingAndIsGoneAfterExit() throws {
        try InteropEnvironment.require("nbdinfo")
        let record = directory.appendingPathComponent("tmpdir").path
        let result = try InteropEnvironment.serve(
            [
                "eval", "get_size=echo 1M", "pread=dd if=/dev/zero count=$3 iflag=count_bytes",
                "get_ready=echo $tmpdir > \(InteropEnvironment.shellQuoted(record))",
            ],
            run: "test -d \"$(cat \(InteropEnvironment.shellQuoted(record)))\" && nbdinfo --size \"$uri\"")
        assertSucceeded(result, "nbd-serve eval")
        XCTAssertEqual(result.stdout, "1048576\n")
        let temporary = try String(contentsOfFile: record, encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        XCTAssertFalse(temporary.isEmpty)
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary), "\(temporary) is left after exit")
    }
}

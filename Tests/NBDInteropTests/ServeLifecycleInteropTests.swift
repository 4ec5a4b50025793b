import Foundation
import NBDTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The `nbd-serve` process itself: signals, `--run` exit status, TCP, command-line errors.
final class ServeLifecycleInteropTests: XCTestCase {
    /// Starts `nbd-serve -v ARGS` and returns once its startup line says it listens (read from its
    /// standard error: an event, not a sleep).
    private func startServer(_ arguments: [String]) throws -> (Process, FileHandle) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try InteropEnvironment.nbdServe)
        process.arguments = ["-v"] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        var text = ""
        while !text.contains("nbd-serve: serving") {
            let data = errors.fileHandleForReading.availableData
            guard !data.isEmpty else {
                XCTFail("nbd-serve ended before listening:\n\(text)")
                throw XCTSkip("nbd-serve did not start")
            }
            text += String(decoding: data, as: UTF8.self)
        }
        return (process, errors.fileHandleForReading)
    }

    func testSigtermFinishesWritesTheStatsReportAndExitsZero() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = directory.appendingPathComponent("sock").path
        let stats = directory.appendingPathComponent("stats.txt").path
        let (process, errors) = try startServer(["-U", socket, "--filter=stats", "memory", "1M", "statsfile=\(stats)"])
        let script = """
            import nbd
            h = nbd.NBD()
            h.connect_unix(\(InteropEnvironment.pythonLiteral(socket)))
            h.pwrite(b"x" * 4096, 0)
            h.flush()
            assert h.pread(4096, 0) == b"x" * 4096
            h.shutdown()
            """
        let result = try InteropEnvironment.run("/usr/bin/python3", ["-c", script])
        assertSucceeded(result, "libnbd client")
        process.terminate()
        process.waitUntilExit()
        _ = errors.readDataToEndOfFile()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        let report = try String(contentsOfFile: stats, encoding: .utf8)
        XCTAssertTrue(report.hasPrefix("total: 3 ops"), report)
        XCTAssertTrue(report.contains("write: 1 ops"), report)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the socket file is removed at exit")
    }

    func testSigintWhileAClientIsConnectedStillExitsZero() throws {
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = directory.appendingPathComponent("sock").path
        let (process, errors) = try startServer(["-U", socket, "memory", "1M"])
        // A client that connects and then just waits: shutdown must not wait for it to leave.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        client.arguments = [
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(18); print('greeted', flush=True); s.recv(1)",
            socket,
        ]
        let output = Pipe()
        client.standardOutput = output
        try client.run()
        var text = ""
        while !text.contains("greeted") {
            let data = output.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
        }
        XCTAssertTrue(text.contains("greeted"))
        process.interrupt()
        process.waitUntilExit()
        client.waitUntilExit()
        _ = errors.readDataToEndOfFile()
        XCTAssertEqual(process.terminationStatus, 0)
    }

    func testRunCommandExitStatusBecomesTheServersExitStatus() throws {
        let result = try InteropEnvironment.serve(["memory", "1M"], run: "test -S \"$unixsocket\" && exit 3")
        XCTAssertEqual(result.status, 3, result.stderr)
    }

    func testTCPPortZeroPassesTheChosenPortToTheCommand() throws {
        try InteropEnvironment.require("nbdinfo")
        let result = try InteropEnvironment.run(
            try InteropEnvironment.nbdServe,
            [
                "-p", "0", "memory", "1M", "--run",
                "test \"$port\" -gt 0 && test -z \"$unixsocket\" && echo \"$uri\" && nbdinfo --size \"$uri\"",
            ])
        assertSucceeded(result, "nbd-serve -p 0")
        XCTAssertTrue(result.stdout.hasPrefix("nbd://127.0.0.1:"), result.stdout)
        XCTAssertTrue(result.stdout.contains("1048576"), result.stdout)
    }

    func testNbdkitsServerOptionsWorkUnchanged() throws {
        try InteropEnvironment.require("nbdkit", "python3-libnbd")
        // The same command line on both servers: -e names the export in $uri, -t 1 serializes,
        // --no-sr refuses structured replies, -D is reported unused; python libnbd connects.
        let script = """
            import nbd, sys
            uri, alias, name, tls = sys.argv[1:5]
            h = nbd.NBD()
            h.connect_uri(uri)
            print(uri.split("?")[0], alias == uri, name, tls, h.get_export_name(),
                  h.get_structured_replies_negotiated(), h.get_size())
            """
        let arguments = [
            "-U", "-", "-e", "a b/c?d", "-t", "1", "--no-sr", "-D", "foo.bar=1", "--log=stderr", "memory", "1M",
            "--run", "/usr/bin/python3 -c '\(script)' \"$uri\" \"$nbd\" \"$exportname\" \"${tls-unset}\"",
        ]
        let ours = try InteropEnvironment.run(try InteropEnvironment.nbdServe, arguments)
        let theirs = try InteropEnvironment.run(try XCTUnwrap(InteropEnvironment.path(of: "nbdkit")), arguments)
        assertSucceeded(ours, "nbd-serve")
        assertSucceeded(theirs, "nbdkit")
        XCTAssertEqual(ours.stdout, "nbd+unix:///a%20b/c%3Fd True a b/c?d unset a b/c?d False 1048576\n")
        XCTAssertEqual(ours.stdout, theirs.stdout, "the same answers from nbdkit")
        XCTAssertTrue(ours.stderr.contains("debug flag -D foo.bar was not used"), ours.stderr)
        XCTAssertTrue(theirs.stderr.contains("debug flag -D foo.bar was not used"), theirs.stderr)
    }

    func testCaptiveUnderLibnbdWithDashSAndWithSocketActivation() throws {
        try InteropEnvironment.require("nbdkit", "nbdinfo", "python3-libnbd")
        let serve = try InteropEnvironment.nbdServe
        let nbdkit = try XCTUnwrap(InteropEnvironment.path(of: "nbdkit"))
        for server in [serve, nbdkit] {
            // nbd_connect_command: the server's standard input and output are one end of a socket
            // pair (-s); it must exit when the client leaves.
            let script = """
                import nbd, sys
                h = nbd.NBD()
                h.connect_command([sys.argv[1], "-s", "memory", "1M"])
                h.pwrite(b"captive", 4096)
                print(h.get_size(), h.pread(7, 4096).decode())
                h.shutdown()
                """
            let command = try InteropEnvironment.run("/usr/bin/python3", ["-c", script, server])
            assertSucceeded(command, "connect_command with \(server) -s")
            XCTAssertEqual(command.stdout, "1048576 captive\n", server)
            // nbdinfo -- [ CMD ]: systemd socket activation (LISTEN_PID, LISTEN_FDS, descriptor 3).
            let activated = try InteropEnvironment.run(
                try XCTUnwrap(InteropEnvironment.path(of: "nbdinfo")), ["--size", "--", "[", server, "memory", "2M", "]"])
            assertSucceeded(activated, "nbdinfo -- [ \(server) memory 2M ]")
            XCTAssertEqual(activated.stdout, "2097152\n", server)
            XCTAssertEqual(activated.stderr, "", "\(server) stops quietly when nbdinfo is done with it")
        }
        let notASocket = try InteropEnvironment.run(serve, ["-s", "memory", "1M"])
        XCTAssertEqual(notASocket.status, 1)
        XCTAssertTrue(notASocket.stderr.contains("must be a socket"), notASocket.stderr)
    }

    func testProbingWithDumpPluginAndDumpConfigAsWithNbdkit() throws {
        try InteropEnvironment.require("nbdkit")
        for server in [try InteropEnvironment.nbdServe, try XCTUnwrap(InteropEnvironment.path(of: "nbdkit"))] {
            let memory = try InteropEnvironment.run(server, ["memory", "--dump-plugin"])
            assertSucceeded(memory, "\(server) memory --dump-plugin")
            let lines = memory.stdout.split(separator: "\n")
            for expected in ["name=memory", "thread_model=parallel", "magic_config_key=size"] {
                XCTAssertTrue(lines.contains(Substring(expected)), "\(server): \(memory.stdout)")
            }
            XCTAssertEqual(try InteropEnvironment.run(server, ["bogus", "--dump-plugin"]).status, 1, server)
            let config = try InteropEnvironment.run(server, ["--dump-config"])
            assertSucceeded(config, "\(server) --dump-config")
            let configLines = config.stdout.split(separator: "\n")
            XCTAssertTrue(configLines.contains("tls=yes"), "\(server): \(config.stdout)")
            let resolved = URL(fileURLWithPath: server).resolvingSymlinksInPath().path
            XCTAssertTrue(configLines.contains("binary=\(resolved)"), "\(server): \(config.stdout)")
        }
    }

    func testSwapLocksTheProcessIntoMemoryOrSaysWhyNot() throws {
        // The --run command's parent is nbd-serve: its VmLck is the memory it has locked.
        let result = try InteropEnvironment.serve(
            ["--swap", "memory", "1M"], run: "awk '/^VmLck:/ { print $2 }' /proc/$PPID/status")
        if result.status == 0 {
            let locked = Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            XCTAssertGreaterThan(locked, 0, "--swap locked nothing: \(result.stdout)")
        } else {
            // Not allowed here (no CAP_IPC_LOCK and a small ulimit -l): refused, with the reason.
            XCTAssertEqual(result.status, 1)
            XCTAssertTrue(result.stderr.contains("mlockall"), result.stderr)
        }
        let unlocked = try InteropEnvironment.serve(
            ["memory", "1M"], run: "awk '/^VmLck:/ { print $2 }' /proc/$PPID/status")
        XCTAssertEqual(unlocked.stdout, "0\n", "without --swap nothing is locked")
    }

    func testCommandLineMistakesExitOneBeforeListening() throws {
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = directory.appendingPathComponent("sock").path
        let result = try InteropEnvironment.run(
            try InteropEnvironment.nbdServe, ["-U", socket, "memory", "1M", "colour=blue"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("unknown parameter 'colour'"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket))
        let filter = try InteropEnvironment.run(try InteropEnvironment.nbdServe, ["--filter=bogus", "memory", "1M"])
        XCTAssertEqual(filter.status, 1)
        XCTAssertTrue(filter.stderr.contains("unknown filter 'bogus'"), filter.stderr)
    }

    func testPidFileHoldsTheServersProcessIDAndStaysAfterExit() throws {
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pidFile = directory.appendingPathComponent("serve.pid").path
        // The --run command's parent is nbd-serve itself.
        let result = try InteropEnvironment.serve(
            ["-P", pidFile, "memory", "1M"], run: "test \"$(cat \(pidFile))\" = \"$PPID\" && echo same")
        assertSucceeded(result, "nbd-serve -P")
        XCTAssertEqual(result.stdout, "same\n")
        XCTAssertTrue(FileManager.default.fileExists(atPath: pidFile), "left behind at exit, as nbdkit leaves it")
    }

    func testExitWithParentStopsTheServerWhenItsParentExits() async throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = directory.appendingPathComponent("sock").path
        // A parent that starts nbd-serve -v, reads its standard error until the startup line says
        // it listens (an event, not a poll), prints its pid and exits. Python closes every other
        // descriptor in the child, so nbd-serve holds nothing of this test's process (Foundation's
        // Process would otherwise wait for it).
        let script = """
            import subprocess, sys
            p = subprocess.Popen([\(InteropEnvironment.pythonLiteral(try InteropEnvironment.nbdServe)), "-v", "--exit-with-parent",
                                  "-U", \(InteropEnvironment.pythonLiteral(socket)), "memory", "1M"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for line in p.stderr:
                if b"nbd-serve: serving" in line:
                    print(p.pid)
                    sys.exit(0)
            sys.exit("nbd-serve ended before listening")
            """
        let result = try InteropEnvironment.run("/usr/bin/python3", ["-c", script])
        assertSucceeded(result, "the parent")
        let pid = try XCTUnwrap(pid_t(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), result.stdout)
        defer { kill(pid, SIGKILL) }
        await waitUntil("nbd-serve \(pid) to stop after its parent exited") {
            // Gone, or a zombie that nobody reaps in this container.
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
            return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "stopped in order: the socket is removed")
    }

    func testHelpAndVersion() throws {
        let help = try InteropEnvironment.run(try InteropEnvironment.nbdServe, ["--help"])
        assertSucceeded(help, "--help")
        for name in [
            "memory", "file", "connection-cache", "--filter=multi-conn", "--filter=fua", "--filter=stats", "statsfile=",
        ] {
            XCTAssertTrue(help.stdout.contains(name), "--help lacks \(name)")
        }
        let version = try InteropEnvironment.run(try InteropEnvironment.nbdServe, ["--version"])
        assertSucceeded(version, "--version")
        XCTAssertTrue(version.stdout.hasPrefix("nbd-serve "))
    }
}

extension InteropEnvironment {
    /// `text` as a Python string literal.
    static func pythonLiteral(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }
}

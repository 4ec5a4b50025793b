import Foundation
import XCTest

/// nbdkit's server options newer than 1.32 (`--print-uri`, `--no-meta-contexts`, `--timeout`,
/// `--keepalive`, `--log=/path`), used as nbdkit documents them, with real clients. nbdkit 1.32 has
/// none of them, so there is no side-by-side run.
final class NewerServerOptionsInteropTests: XCTestCase {
    func testPrintURIGivesAURIAndCommandThatWork() throws {
        try InteropEnvironment.require("nbdinfo")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // The printed command is run as printed (the URI is printed before --run starts).
        let result = try InteropEnvironment.shell(
            """
            "$SERVE" -U "$DIR/sock" -e disk --print-uri --keepalive memory 3M \\
                --run 'eval "$(sed -n 4p printed) --size"' > printed
            cat printed
            """, in: directory)
        assertSucceeded(result, "nbd-serve --print-uri")
        let uri = "nbd+unix:///disk?socket=\(directory.path)/sock"
        XCTAssertEqual(
            result.stdout.split(separator: "\n").map(String.init),
            [uri, "Shell-quoted URI: \"\(uri)\"", "Command to query the NBD endpoint:", "  nbdinfo \"\(uri)\"", "3145728"])
    }

    func testNoMetaContextsLeavesClientsWithoutBlockStatus() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(
            """
            import nbd, os
            h = nbd.NBD()
            h.add_meta_context("base:allocation")
            h.connect_uri(os.environ["uri"])
            print(h.can_meta_context("base:allocation"), h.get_structured_replies_negotiated(), len(h.pread(512, 0)))
            """, in: directory)
        let without = try InteropEnvironment.serve(["--no-meta-contexts", "memory", "1M"], run: command)
        assertSucceeded(without, "nbd-serve --no-meta-contexts")
        XCTAssertEqual(without.stdout, "False True 512\n")
        let with = try InteropEnvironment.serve(["memory", "1M"], run: command)
        assertSucceeded(with, "nbd-serve")
        XCTAssertEqual(with.stdout, "True True 512\n")
    }

    /// A client that connects and never finishes the handshake is dropped at `--timeout`, and the
    /// drop is logged to the `--log` file; a well-behaved client is served meanwhile.
    func testTimeoutDropsASlowClientAndTheLogFileSaysSo() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("nbd.log").path
        let command = try InteropEnvironment.pythonCommand(
            """
            import nbd, os, socket, sys
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(30)  # bounded: a server that never drops it fails the test
            s.connect(os.environ["unixsocket"])
            greeting = s.recv(18)
            assert greeting[:8] == b"NBDMAGIC", greeting
            try:
                rest = s.recv(1)
            except socket.timeout:
                sys.exit("not dropped within 30 s")
            assert rest == b"", rest
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            print(h.get_size())
            """, in: directory)
        let result = try InteropEnvironment.serve(
            ["--timeout=200ms", "--log=\(log)", "memory", "1M"], run: command)
        assertSucceeded(result, "nbd-serve --timeout --log")
        XCTAssertEqual(result.stdout, "1048576\n")
        let logged = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertTrue(
            logged.contains("nbd-serve: error: connection 1: dropped: the handshake was not finished within"), logged)
        XCTAssertFalse(result.stderr.contains("dropped"), "errors go to the log file, not standard error")
    }
}

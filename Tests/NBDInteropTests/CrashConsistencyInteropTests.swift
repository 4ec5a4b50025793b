import Foundation
import XCTest

/// What a client was told is durable must be in the file after the server dies: SIGKILL right after
/// acknowledged flushes and FUA writes, and SIGTERM with writes in flight.
final class CrashConsistencyInteropTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// The end of a `--run` command that kills nbd-serve (its parent) with SIGKILL. A killed
    /// nbd-serve cannot remove the private directory of its `-U -` socket, so the command records
    /// the socket's path and removes that directory first (the server keeps listening on the
    /// unlinked socket): no test run leaves folders behind in /tmp.
    private var killServer: String {
        let record = InteropEnvironment.shellQuoted(directory.appendingPathComponent("socket.txt").path)
        return "echo \"$unixsocket\" > \(record) && rm -r \"$(dirname \"$unixsocket\")\" && kill -KILL $PPID"
    }

    /// Checks that the last ``killServer`` removed the server's private socket directory.
    private func assertNoSocketDirectoryLeft(file: StaticString = #filePath, line: UInt = #line) throws {
        let socket = try String(contentsOf: directory.appendingPathComponent("socket.txt"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(socket.hasPrefix("/"), "the run recorded the socket: '\(socket)'", file: file, line: line)
        let folder = URL(fileURLWithPath: socket).deletingLastPathComponent().path
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder), "\(folder) was left behind", file: file, line: line)
    }

    private func makeDisk(size: Int) throws -> String {
        let path = directory.appendingPathComponent("disk.img").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        XCTAssertEqual(truncate(path, off_t(size)), 0)
        return path
    }

    /// Block i holds 4 KiB of byte (i % 251 + 1), so every block is distinguishable from zeroes.
    private let pattern = "def block(i): return bytes([i % 251 + 1]) * 4096\n"

    private func assertBlocks(_ indices: [Int], in path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path))
        for i in indices {
            let block = data[(i * 4096)..<((i + 1) * 4096)]
            XCTAssertTrue(block.allSatisfy { $0 == UInt8(i % 251 + 1) }, "block \(i) was acknowledged but is not in the file",
                          file: file, line: line)
        }
    }

    func testAcknowledgedFlushesAndFUAWritesSurviveSIGKILL() throws {
        try InteropEnvironment.require("python3-libnbd")
        let stacks: [[String]] = [[], ["--filter=multi-conn"], ["--filter=fua"], ["--filter=multi-conn", "--filter=stats"]]
        for stack in stacks {
            let disk = try makeDisk(size: 1 << 20)
            var extra: [String] = []
            if stack.contains("--filter=fua") { extra.append("fuamode=native") }
            if stack.contains("--filter=stats") { extra.append("statsfile=/dev/null") }
            let script = pattern + """
                import nbd, os
                hs = []
                for _ in range(2):
                    h = nbd.NBD(); h.connect_uri(os.environ["uri"]); hs.append(h)
                for i in range(0, 64):
                    hs[i % 2].pwrite(block(i), i * 4096)
                hs[1].flush()
                for i in range(64, 96):
                    hs[i % 2].pwrite(block(i), i * 4096, nbd.CMD_FLAG_FUA)
                print("acknowledged", flush=True)
                """
            let command = try InteropEnvironment.pythonCommand(script, in: directory)
            let result = try InteropEnvironment.serve(
                stack + ["file", disk] + extra, run: "\(command) && \(killServer)")
            XCTAssertTrue(result.stdout.contains("acknowledged"), "\(stack): \(result.stdout)\n\(result.stderr)")
            try assertBlocks(Array(0..<96), in: disk)
            try assertNoSocketDirectoryLeft()
        }
    }

    func testAcknowledgedWritesSurviveSIGTERMWithRequestsInFlight() throws {
        try InteropEnvironment.require("python3-libnbd")
        let disk = try makeDisk(size: 4 << 20)
        let acknowledged = directory.appendingPathComponent("acknowledged.txt").path
        let script = pattern + """
            import nbd, os, signal
            h = nbd.NBD(); h.connect_uri(os.environ["uri"])
            log = open(\(InteropEnvironment.shellQuoted(acknowledged).replacingOccurrences(of: "'", with: "\"")), "w")
            # Some writes acknowledged for certain, then many in flight when the signal arrives.
            for i in range(64):
                h.pwrite(block(i), i * 4096)
                log.write("%d\\n" % i); log.flush()
            cookies = {}
            for i in range(64, 512):
                cookies[h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(block(i))), i * 4096)] = i
                if i == 255:
                    os.kill(os.getppid(), signal.SIGTERM)
            try:
                while cookies:
                    h.poll(-1)
                    for cookie in list(cookies):
                        try:
                            if h.aio_command_completed(cookie):
                                log.write("%d\\n" % cookies.pop(cookie)); log.flush()
                        except nbd.Error:
                            cookies.pop(cookie)
            except nbd.Error:
                pass
            print("done", flush=True)
            """
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let result = try InteropEnvironment.serve(["--filter=multi-conn", "file", disk], run: "exec \(command)")
        let lines = (try? String(contentsOfFile: acknowledged, encoding: .utf8)) ?? ""
        let indices = lines.split(separator: "\n").compactMap { Int($0) }
        XCTAssertGreaterThanOrEqual(
            indices.count, 64, "the synchronous writes were acknowledged: \(result.stdout) \(result.stderr)")
        try assertBlocks(indices, in: disk)
    }

    /// Runs nbd-serve with `TMPDIR` set to `temporary`, where the cache and cow filters put their files.
    private func serve(_ arguments: [String], temporary: String, run command: String) throws -> InteropEnvironment.Result {
        try InteropEnvironment.run(
            "/usr/bin/env", ["TMPDIR=\(temporary)", try InteropEnvironment.nbdServe, "-U", "-"] + arguments + ["--run", command])
    }

    /// Through the cache filter: in writethrough mode every acknowledged write, and in writeback mode
    /// every write covered by an acknowledged flush or FUA, is in the file after SIGKILL. The cache's
    /// temporary file had no name while the server ran (its /proc fd link ends in "(deleted)") and
    /// nothing is left in TMPDIR afterwards.
    func testAcknowledgedWritesThroughTheCacheSurviveSIGKILLAndLeaveNoTemporaryFile() throws {
        try InteropEnvironment.require("python3-libnbd")
        let stacks: [(filters: [String], extra: [String], unflushedSurvive: Bool)] = [
            (["--filter=cache"], [], false),
            (["--filter=multi-conn", "--filter=cache"], ["multi-conn-mode=emulate"], false),
            (["--filter=cache"], ["cache=writethrough"], true),
            (["--filter=cache"], ["cache-on-read=true", "cache-min-block-size=4K"], false),
        ]
        for stack in stacks {
            let disk = try makeDisk(size: 1 << 20)
            let temporary = directory.appendingPathComponent("tmp-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
            let descriptors = directory.appendingPathComponent("fds.txt").path
            let script = pattern + """
                import nbd, os
                hs = []
                for _ in range(2):
                    h = nbd.NBD(); h.connect_uri(os.environ["uri"]); hs.append(h)
                for i in range(0, 64):
                    hs[i % 2].pread(4096, i * 4096)
                    hs[i % 2].pwrite(block(i), i * 4096)
                hs[1].flush()
                for i in range(64, 96):
                    hs[i % 2].pwrite(block(i), i * 4096, nbd.CMD_FLAG_FUA)
                for i in range(96, 128):
                    hs[i % 2].pwrite(block(i), i * 4096)
                print("acknowledged", flush=True)
                """
            let command = try InteropEnvironment.pythonCommand(script, in: directory)
            let description = "\(stack.filters) \(stack.extra)"
            let result = try serve(
                stack.filters + ["file", disk] + stack.extra, temporary: temporary,
                run: "\(command) && ls -l /proc/$PPID/fd > \(InteropEnvironment.shellQuoted(descriptors)) && \(killServer)")
            XCTAssertTrue(result.stdout.contains("acknowledged"), "\(description): \(result.stdout)\n\(result.stderr)")
            try assertBlocks(Array(0..<96), in: disk)
            if stack.unflushedSurvive { try assertBlocks(Array(96..<128), in: disk) }
            let links = (try? String(contentsOfFile: descriptors, encoding: .utf8)) ?? ""
            let cacheLinks = links.split(separator: "\n").filter { $0.contains(temporary + "/nbd-cache-") }
            XCTAssertEqual(cacheLinks.count, 1, "\(description): the server holds one cache file: \(links)")
            XCTAssertTrue(cacheLinks.allSatisfy { $0.hasSuffix("(deleted)") }, "\(description): \(cacheLinks)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temporary), [], "\(description)")
            try assertNoSocketDirectoryLeft()
        }
    }

    /// The cow overlay's temporary file is unlinked too: nothing is left after SIGKILL.
    func testTheCowOverlayLeavesNoTemporaryFileAfterSIGKILL() throws {
        try InteropEnvironment.require("nbdsh")
        let disk = try makeDisk(size: 1 << 20)
        let temporary = directory.appendingPathComponent("tmp").path
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        let descriptors = directory.appendingPathComponent("fds.txt").path
        let result = try serve(
            ["--filter=cow", "file", disk], temporary: temporary,
            run: "nbdsh -u \"$uri\" -c 'h.pwrite(b\"x\" * 65536, 0)' && ls -l /proc/$PPID/fd > \(InteropEnvironment.shellQuoted(descriptors)) && \(killServer)")
        let links = (try? String(contentsOfFile: descriptors, encoding: .utf8)) ?? ""
        XCTAssertTrue(
            links.split(separator: "\n").contains { $0.contains(temporary + "/nbd-cow-") && $0.hasSuffix("(deleted)") },
            "\(links)\n\(result.stderr)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temporary), [])
        try assertNoSocketDirectoryLeft()
        let data = try XCTUnwrap(FileManager.default.contents(atPath: disk))
        XCTAssertTrue(data.allSatisfy { $0 == 0 }, "cow wrote to the file below")
    }
}

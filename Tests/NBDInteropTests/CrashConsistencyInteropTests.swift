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
                stack + ["file", disk] + extra, run: "\(command) && kill -KILL $PPID")
            XCTAssertTrue(result.stdout.contains("acknowledged"), "\(stack): \(result.stdout)\n\(result.stderr)")
            try assertBlocks(Array(0..<96), in: disk)
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
}

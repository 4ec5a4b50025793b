import Foundation
import XCTest

/// The log filter's file for a known python libnbd session, compared field by field with what
/// nbdkit's log filter writes for the same session, so scripts that read nbdkit's logs read ours.
final class LogInteropTests: XCTestCase {
    private let script = """
        import nbd, os, errno
        def session(requests):
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            for request in requests:
                try:
                    request(h)
                except nbd.Error as e:
                    pass
            h.shutdown()
        session([
            lambda h: h.pwrite(b"x" * 512, 1024),
            lambda h: h.pread(512, 0),
            lambda h: h.pwrite(b"y" * 512, 0, nbd.CMD_FLAG_FUA),
            lambda h: h.zero(4096, 8192),
            lambda h: h.zero(512, 0, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA),
            lambda h: h.trim(4096, 8192),
            lambda h: h.flush(),
        ])
        session([lambda h: h.pread(4096, 65536)])
        """

    /// The log's lines per connection, without timestamps, split into `key=value` fields (and bare
    /// words, such as the action, keyed by their position).
    private func connections(in log: String) -> [String: [[String: String]]] {
        var result: [String: [[String: String]]] = [:]
        for line in log.split(separator: "\n") {
            let words = line.split(separator: " ").dropFirst(2)  // date and time
            guard let first = words.first, first.hasPrefix("connection=") else { continue }
            var fields: [String: String] = [:]
            for (index, word) in words.dropFirst().enumerated() {
                if let equals = word.firstIndex(of: "=") {
                    fields[String(word[..<equals])] = String(word[word.index(after: equals)...])
                } else {
                    fields["word\(index)"] = String(word)
                }
            }
            result[String(first), default: []].append(fields)
        }
        return result
    }

    func testTheLogMatchesNbdkitsForTheSameSessionFieldByField() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdkit")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let ourLog = directory.appendingPathComponent("ours.log").path
        let theirLog = directory.appendingPathComponent("theirs.log").path
        let parameters = ["memory", "1M", "error-trim=EPERM", "error-trim-rate=100%"]
        let ours = try InteropEnvironment.serve(
            ["--filter=log", "--filter=error"] + parameters + ["logfile=\(ourLog)"], run: command)
        assertSucceeded(ours, "nbd-serve")
        let theirs = try InteropEnvironment.run(
            "/usr/bin/nbdkit",
            ["-U", "-", "--filter=log", "--filter=error"] + parameters
                + ["logfile=\(theirLog)", "--run", "uri=\"$uri\" \(command)"])
        assertSucceeded(theirs, "nbdkit")
        let ourConnections = connections(in: try String(contentsOfFile: ourLog, encoding: .utf8))
        let theirConnections = connections(in: try String(contentsOfFile: theirLog, encoding: .utf8))
        XCTAssertEqual(ourConnections.keys.sorted(), ["connection=1", "connection=2"])
        for key in ["connection=1", "connection=2"] {
            let mine = ourConnections[key] ?? []
            let reference = theirConnections[key] ?? []
            XCTAssertEqual(
                mine.count, reference.count, "\(key): lines differ in number\nours: \(mine)\nnbdkit: \(reference)")
            for (line, (a, b)) in zip(mine, reference).enumerated() {
                XCTAssertEqual(a, b, "\(key) line \(line + 1)")
            }
        }
        XCTAssertEqual(ourConnections["connection=1"]?.count, 16, "Connect, 7 requests in 2 lines, Disconnect")
    }

    func testAnUnwritableLogfileStopsNbdServeAtStartUpWithTheReason() throws {
        let result = try InteropEnvironment.serve(
            ["--filter=log", "memory", "1M", "logfile=/nonexistent-directory/nbd.log"], run: "echo served")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertFalse(result.stdout.contains("served"), "no client may be served: \(result.stdout)")
        XCTAssertTrue(
            result.stderr.contains("logfile=/nonexistent-directory/nbd.log: cannot open the log for writing"),
            result.stderr)
    }
}

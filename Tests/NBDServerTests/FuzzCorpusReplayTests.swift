import Foundation
import NBDServer
import XCTest

/// Replays the libFuzzer corpus (`Fuzz/Corpus`) through the fuzz entry points, so every input the
/// fuzzers kept stays a regression test in the normal `swift test` run (and under ASan in CI). The
/// entry points trap on a crash or a broken invariant (a backend not closed exactly once, a request
/// outside the export reaching the backend).
final class FuzzCorpusReplayTests: XCTestCase {
    private func corpus(_ name: String) throws -> [URL] {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/Corpus/\(name)").standardized
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        XCTAssertTrue(files.contains { $0.lastPathComponent.hasPrefix("seed-") }, "no seeds in \(directory.path)")
        return files.sorted { $0.path < $1.path }
    }

    func testHandshakeCorpusReplays() throws {
        for file in try corpus("Handshake") {
            let bytes = try Data(contentsOf: file)
            bytes.withUnsafeBytes { FuzzEntryPoints.handshake($0) }
        }
    }

    func testConnectionCorpusReplays() throws {
        for file in try corpus("Connection") {
            let bytes = try Data(contentsOf: file)
            bytes.withUnsafeBytes { FuzzEntryPoints.connection($0) }
        }
    }
}

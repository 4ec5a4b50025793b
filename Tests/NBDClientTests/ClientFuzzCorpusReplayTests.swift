import Foundation
import NBDClient
import XCTest

/// Replays the libFuzzer corpus of the client's reply parser (`Fuzz/Corpus/ClientReplies`), so every
/// input the fuzzer kept stays a regression test. The entry point traps on a crash or a broken
/// invariant (a chunk outside its request, block status longer than asked).
final class ClientFuzzCorpusReplayTests: XCTestCase {
    func testClientRepliesCorpusReplays() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/Corpus/ClientReplies").standardized
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        XCTAssertTrue(files.contains { $0.lastPathComponent.hasPrefix("seed-") }, "no seeds in \(directory.path)")
        for file in files.sorted(by: { $0.path < $1.path }) {
            let bytes = try Data(contentsOf: file)
            bytes.withUnsafeBytes { ClientFuzzEntryPoints.replies($0) }
        }
    }
}

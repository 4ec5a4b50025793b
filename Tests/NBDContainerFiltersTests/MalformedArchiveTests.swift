import Foundation
import NBDContainerFilters
import NBDCore
import NBDTestSupport
import XCTest

/// Damaged archives never crash the tar filter: seeded damage to the headers of a GNU and a pax
/// archive either refuses the connection or serves an entry that lies within the archive.
final class MalformedArchiveTests: XCTestCase {
    func testDamagedHeadersNeverCrash() async throws {
        let directory = try ToolRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let long = String(repeating: "d", count: 120) + "/disk.img"
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent(String(repeating: "d", count: 120)), withIntermediateDirectories: true)
        try Data(ToolRunner.sampleData(size: 5000)).write(to: directory.appendingPathComponent(long))
        try Data("x".utf8).write(to: directory.appendingPathComponent("a.txt"))
        var generator = SeededGenerator(seed: 5)
        for format in ["gnu", "pax"] {
            try ToolRunner.run("tar", ["--format=\(format)", "-cf", "t.tar", "a.txt", long], in: directory)
            let original = Array(try Data(contentsOf: directory.appendingPathComponent("t.tar")))
            var refused = 0
            for _ in 0..<150 {
                var bytes = original
                // Headers and metadata live in the first few blocks: damage them.
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    bytes[Int.random(in: 0..<min(bytes.count, 2048), using: &generator)] = UInt8.random(
                        in: 0...255, using: &generator)
                }
                let below = TestMemoryBackend(size: UInt64(bytes.count))
                try await below.writeBytes(bytes, at: 0)
                do {
                    let export = try await TarLayer(entry: long).wrap(AnyBlockBackend(below), for: ConnectionInfo())
                    XCTAssertLessThanOrEqual(export.capabilities.size, UInt64(bytes.count))
                    if export.capabilities.size > 0 {
                        _ = try await export.readBytes(Int(export.capabilities.size), at: 0)
                    }
                } catch {
                    refused += 1
                }
            }
            XCTAssertGreaterThan(refused, 0, format)
        }
    }
}

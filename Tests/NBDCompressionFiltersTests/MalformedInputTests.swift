import Foundation
import NBDCompressionFilters
import NBDCore
import NBDTestSupport
import XCTest

/// Damaged files never crash a filter: valid files with bytes flipped, cut short or overwritten at
/// seeded places either refuse the connection or serve reads that succeed or fail with an error.
/// (Under the address sanitizer, CI's second stage, an out-of-bounds access fails the test too.)
final class MalformedInputTests: XCTestCase {
    private func compressed(_ tool: String, _ arguments: [String], suffix: String) throws -> [UInt8] {
        let directory = try ToolRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(ToolRunner.sampleData(size: 200_000, seed: 99)).write(to: directory.appendingPathComponent("p"))
        try ToolRunner.run(tool, arguments + ["-k", "p"], in: directory)
        return Array(try Data(contentsOf: directory.appendingPathComponent("p" + suffix)))
    }

    /// Opens `mutations` damaged copies of `original` through `layer` and reads each one whole.
    private func survive(_ original: [UInt8], _ layer: any FilterLayer, mutations: Int, seed: UInt64) async throws {
        var generator = SeededGenerator(seed: seed)
        var refused = 0
        for round in 0..<mutations {
            var bytes = original
            switch round % 3 {
            case 0:
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(
                        in: 1...255, using: &generator)
                }
            case 1:
                bytes.removeLast(Int.random(in: 1..<bytes.count, using: &generator))
            default:
                // Damage near the end, where the xz index and lzip trailers are.
                let position = bytes.count - Int.random(in: 1...min(64, bytes.count), using: &generator)
                bytes[position] = UInt8.random(in: 0...255, using: &generator)
            }
            let below = try await CompressedImage.backend(bytes)
            let export: AnyBlockBackend
            do {
                export = try await layer.wrap(below, for: ConnectionInfo())
            } catch {
                refused += 1
                continue
            }
            let size = Int(min(export.capabilities.size, 1 << 22))
            if size > 0 {
                _ = try? await export.readBytes(size, at: 0)
                _ = try? await export.readBytes(1, at: UInt64(size - 1))
            }
            await export.close()
        }
        XCTAssertGreaterThan(refused, 0, "no damaged file was refused")
    }

    func testDamagedXzFilesNeverCrash() async throws {
        try await survive(
            try compressed("xz", ["--block-size=20000", "-0"], suffix: ".xz"), XZLayer(), mutations: 90, seed: 1)
    }

    func testDamagedLzipFilesNeverCrash() async throws {
        try await survive(
            try compressed("lzip", ["-0", "--member-size=100KiB"], suffix: ".lz"), LzipLayer(), mutations: 90, seed: 2)
    }

    func testDamagedGzipAndBzip2FilesNeverCrash() async throws {
        try await survive(try compressed("gzip", [], suffix: ".gz"), GzipLayer(), mutations: 30, seed: 3)
        try await survive(try compressed("bzip2", [], suffix: ".bz2"), BZip2Layer(), mutations: 30, seed: 4)
    }
}

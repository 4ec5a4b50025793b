import Foundation
import NBDCompressionFilters
import NBDCore
import NBDTestSupport
import XCTest

/// The gzip and bzip2 filters over files made by the real tools: the whole file decompressed once,
/// shared by every connection; damaged or foreign files refused when the connection opens.
final class WholeStreamFilterTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try ToolRunner.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// `data` compressed by `tool` (gzip or bzip2) with `arguments`.
    private func compress(_ data: [UInt8], _ tool: String, _ arguments: [String] = [], name: String = "plain.img")
        throws -> [UInt8]
    {
        try Data(data).write(to: directory.appendingPathComponent(name))
        try ToolRunner.run(tool, arguments + ["-k", "-f", name], in: directory)
        let suffix = tool == "gzip" ? ".gz" : ".bz2"
        return Array(try Data(contentsOf: directory.appendingPathComponent(name + suffix)))
    }

    private func layer(_ tool: String) -> any FilterLayer {
        tool == "gzip" ? GzipLayer() : BZip2Layer()
    }

    func testServesTheUncompressedBytesToEveryConnection() async throws {
        for tool in ["gzip", "bzip2"] {
            let data = ToolRunner.sampleData(size: 2 << 20, seed: 21)
            let compressed = try compress(data, tool)
            let layer = layer(tool)
            // Three connections opening at once: one decompression, one copy.
            let below = try await CompressedImage.backend(compressed)
            async let first = layer.wrap(below, for: ConnectionInfo())
            async let second = layer.wrap(below, for: ConnectionInfo())
            async let third = layer.wrap(below, for: ConnectionInfo())
            let exports = try await [first, second, third]
            for export in exports {
                XCTAssertEqual(export.capabilities.size, UInt64(data.count), tool)
                XCTAssertFalse(export.capabilities.isWritable, tool)
            }
            let all = try await exports[1].readBytes(data.count, at: 0)
            XCTAssertTrue(all == data, "\(tool): whole read differs")
            var generator = SeededGenerator(seed: 9)
            for _ in 0..<100 {
                let count = Int.random(in: 1...65536, using: &generator)
                let offset = Int.random(in: 0...(data.count - count), using: &generator)
                let bytes = try await exports[2].readBytes(count, at: UInt64(offset))
                XCTAssertTrue(bytes[...] == data[offset..<(offset + count)], "\(tool): read of \(count) at \(offset)")
            }
            await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in
                    try await exports[0].writeBytes([1], at: 0)
                }, code: .notPermitted)
            for export in exports { await export.close() }
            await layer.shutdown()
        }
    }

    func testConcatenatedMembersAreReadOneAfterTheOther() async throws {
        for tool in ["gzip", "bzip2"] {
            let first = ToolRunner.sampleData(size: 100_000, seed: 1)
            let second = ToolRunner.sampleData(size: 50_000, seed: 2)
            let compressed = try compress(first, tool, name: "a.img") + compress(second, tool, name: "b.img")
            let export = try await layer(tool).wrap(
                try await CompressedImage.backend(compressed), for: ConnectionInfo())
            let all = try await export.readBytes(first.count + second.count, at: 0)
            XCTAssertTrue(all == first + second, tool)
        }
    }

    func testWrongFormatTruncatedAndCorruptFilesAreRefusedWithTheReason() async throws {
        for tool in ["gzip", "bzip2"] {
            let data = ToolRunner.sampleData(size: 300_000, seed: 4)
            let compressed = try compress(data, tool)
            var corrupt = compressed
            corrupt[compressed.count / 2] ^= 0x55
            let cases: [(String, [UInt8], String)] = [
                (
                    "xz file", [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00] + [UInt8](repeating: 1, count: 64),
                    "not a \(tool) file"
                ),
                ("empty", [], "not a \(tool) file"),
                ("truncated", Array(compressed.prefix(compressed.count / 2)), "truncated"),
                ("corrupt", corrupt, "corrupt"),
            ]
            for (name, bytes, expected) in cases {
                let error = await XCTAssertThrowsNBDError(
                    { () async throws(NBDError) in
                        _ = try await self.layer(tool).wrap(
                            try! await CompressedImage.backend(bytes), for: ConnectionInfo())
                    }, code: .invalidArgument, "\(tool) \(name)")
                XCTAssertTrue(
                    error?.message.contains(expected) ?? false, "\(tool) \(name): \(String(describing: error))")
            }
        }
    }

    func testAFailedDecompressionIsTriedAgainByTheNextConnection() async throws {
        let data = ToolRunner.sampleData(size: 100_000, seed: 8)
        let compressed = try compress(data, "gzip")
        let layer = GzipLayer()
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                _ = try await layer.wrap(
                    try! await CompressedImage.backend(Array(compressed.prefix(1000))), for: ConnectionInfo())
            }, code: .invalidArgument)
        let export = try await layer.wrap(try await CompressedImage.backend(compressed), for: ConnectionInfo())
        XCTAssertEqual(export.capabilities.size, UInt64(data.count))
    }

    func testNamesAndParameters() throws {
        XCTAssertEqual(GzipLayer.filterName, "gzip")
        XCTAssertEqual(BZip2Layer.filterName, "bzip2")
        XCTAssertTrue(GzipLayer.parameters.isEmpty)
        XCTAssertTrue(BZip2Layer.parameters.isEmpty)
        XCTAssertNoThrow(try GzipLayer(parameters: [:]))
    }
}

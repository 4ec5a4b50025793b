import Foundation
import NBDCompressionFilters
import NBDCore
import NBDTestSupport
import XCTest

/// The xz filter over files made by the real `xz`: many blocks, one block, several streams, and
/// damaged or foreign files, which must be refused when the connection opens.
final class XZFilterTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try ToolRunner.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Writes `data` as plain.img, compresses it with `xz ARGUMENTS`, and returns the .xz bytes.
    private func compress(_ data: [UInt8], _ arguments: [String], name: String = "plain.img") throws -> [UInt8] {
        let plain = directory.appendingPathComponent(name)
        try Data(data).write(to: plain)
        try ToolRunner.run("xz", arguments + ["-k", "-f", name], in: directory)
        return Array(try Data(contentsOf: directory.appendingPathComponent(name + ".xz")))
    }

    private func open(_ compressed: [UInt8], _ layer: XZLayer = XZLayer()) async throws -> AnyBlockBackend {
        try await layer.wrap(try await CompressedImage.backend(compressed), for: ConnectionInfo())
    }

    func testManySmallBlocksServeTheUncompressedBytesReadOnly() async throws {
        let data = ToolRunner.sampleData(size: 3 << 20)
        let export = try await open(try compress(data, ["--block-size=65536", "-1"]))
        XCTAssertEqual(export.capabilities.size, UInt64(data.count))
        XCTAssertFalse(export.capabilities.isWritable)
        XCTAssertTrue(export.capabilities.canMultiConn)
        XCTAssertFalse(export.capabilities.canExtents)
        // Decoding takes milliseconds: reads go to the server's slow-operation pool.
        XCTAssertTrue(export.capabilities.slowOperations.contains(.read))
        let all = try await export.readBytes(data.count, at: 0)
        XCTAssertTrue(all == data, "whole-file read differs from the plain file")
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                try await export.writeBytes([1], at: 0)
            }, code: .notPermitted)
        await export.close()
    }

    func testRandomReadsAcrossBlockBoundariesMatchThePlainFile() async throws {
        let data = ToolRunner.sampleData(size: 2 << 20, seed: 7)
        // Blocks of 100000 bytes: boundaries fall anywhere, not on 4 KiB lines; a depth of 2 makes
        // reads evict and decode again.
        let export = try await open(
            try compress(data, ["--block-size=100000", "-0"]), XZLayer(maximumDepth: 2))
        var generator = SeededGenerator(seed: 42)
        for _ in 0..<100 {
            let count = Int.random(in: 1...150_000, using: &generator)
            let offset = Int.random(in: 0...(data.count - count), using: &generator)
            let bytes = try await export.readBytes(count, at: UInt64(offset))
            XCTAssertTrue(bytes[...] == data[offset..<(offset + count)], "read of \(count) at \(offset) differs")
        }
        // The last byte, alone.
        let last = try await export.readBytes(1, at: UInt64(data.count - 1))
        XCTAssertEqual(last, [data[data.count - 1]])
    }

    func testOneBlockFileIsDecodedWholeAndRefusedAboveMaxBlock() async throws {
        let data = ToolRunner.sampleData(size: 1 << 20, seed: 3)
        let compressed = try compress(data, ["-T1", "-0"])
        let export = try await open(compressed)
        let middle = try await export.readBytes(4096, at: 500_000)
        XCTAssertTrue(middle[...] == data[500_000..<504_096])
        let refused = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                _ = try await XZLayer(maximumBlock: 65536).wrap(
                    try! await CompressedImage.backend(compressed), for: ConnectionInfo())
            }, code: .invalidArgument)
        XCTAssertTrue(refused?.message.contains("xz-max-block=65536") ?? false, "\(String(describing: refused))")
    }

    func testConcatenatedStreamsWithPaddingReadAsOneFile() async throws {
        let first = ToolRunner.sampleData(size: 300_000, seed: 11)
        let second = ToolRunner.sampleData(size: 200_001, seed: 12)
        var compressed = try compress(first, ["--block-size=65536", "-0"], name: "a.img")
        compressed += [0, 0, 0, 0, 0, 0, 0, 0]
        compressed += try compress(second, ["--block-size=50000", "-0", "--check=sha256"], name: "b.img")
        let export = try await open(compressed)
        XCTAssertEqual(export.capabilities.size, UInt64(first.count + second.count))
        let all = try await export.readBytes(first.count + second.count, at: 0)
        XCTAssertTrue(all == first + second)
    }

    func testWrongFormatTruncatedAndCorruptFilesAreRefusedWithTheReason() async throws {
        let data = ToolRunner.sampleData(size: 400_000, seed: 5)
        let compressed = try compress(data, ["--block-size=65536", "-0"])
        let cases: [(String, [UInt8], String)] = [
            ("gzip-looking", [0x1F, 0x8B] + [UInt8](repeating: 7, count: 100), "not an xz file"),
            ("tiny", [0xFD, 0x37], "not an xz file"),
            ("truncated", Array(compressed.prefix(compressed.count - 100)), "truncated"),
            ("zero tail", compressed + [0, 0, 0], "truncated or corrupt"),
            ("footer", flipping(compressed, at: compressed.count - 6), "corrupt"),
            ("index", flipping(compressed, at: compressed.count - 20), "corrupt"),
            ("header", flipping(compressed, at: 7), "corrupt"),
        ]
        for (name, bytes, expected) in cases {
            let error = await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in
                    _ = try await XZLayer().wrap(try! await CompressedImage.backend(bytes), for: ConnectionInfo())
                }, code: .invalidArgument, name)
            XCTAssertTrue(error?.message.contains(expected) ?? false, "\(name): \(String(describing: error))")
        }
    }

    func testCorruptBlockDataFailsTheReadNotTheServer() async throws {
        let data = ToolRunner.sampleData(size: 400_000, seed: 6)
        let compressed = try compress(data, ["--block-size=65536", "-0"])
        // A byte inside the first block's compressed data (past its 12-byte stream header and its
        // block header): the index is intact, so the connection opens, and that block's reads fail.
        let export = try await open(flipping(compressed, at: 40))
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                _ = try await export.readBytes(100, at: 0)
            }, code: .ioError)
        XCTAssertTrue(error?.message.contains("corrupt") ?? false, "\(String(describing: error))")
        let later = try await export.readBytes(1000, at: 300_000)
        XCTAssertTrue(later[...] == data[300_000..<301_000])
    }

    func testEmptyFileHasSizeZero() async throws {
        let export = try await open(try compress([], []))
        XCTAssertEqual(export.capabilities.size, 0)
    }

    func testParametersAreNbdkits() throws {
        let defaults = try XZLayer(parameters: [:])
        XCTAssertEqual(defaults.maximumBlock, 512 << 20)
        XCTAssertEqual(defaults.maximumDepth, 8)
        let set = try XZLayer(parameters: ["xz-max-block": "16M", "xz-max-depth": "3"])
        XCTAssertEqual(set.maximumBlock, 16 << 20)
        XCTAssertEqual(set.maximumDepth, 3)
        XCTAssertThrowsError(try XZLayer(parameters: ["xz-max-depth": "0"]))
        XCTAssertThrowsError(try XZLayer(parameters: ["xz-max-block": "big"]))
        XCTAssertEqual(XZLayer.filterName, "xz")
    }

    private func flipping(_ bytes: [UInt8], at index: Int) -> [UInt8] {
        var copy = bytes
        copy[index] ^= 0x55
        return copy
    }
}

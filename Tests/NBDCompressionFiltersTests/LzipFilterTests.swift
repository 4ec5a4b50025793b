import Foundation
import NBDCompressionFilters
import NBDCore
import NBDTestSupport
import XCTest

/// The lzip filter over files made by the real `lzip`: many members of one size (split pieces, as
/// plzip makes them), members of varying sizes (`--member-size`), one member, and damaged files.
final class LzipFilterTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try ToolRunner.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// `data` compressed by `lzip ARGUMENTS`; with `pieces`, split into pieces of that many bytes,
    /// each compressed alone and concatenated, as nbdkit's manual suggests without plzip.
    private func compress(_ data: [UInt8], _ arguments: [String] = [], pieces: Int? = nil) throws -> [UInt8] {
        guard let pieces else {
            try Data(data).write(to: directory.appendingPathComponent("plain.img"))
            try ToolRunner.run("lzip", arguments + ["-k", "-f", "plain.img"], in: directory)
            return Array(try Data(contentsOf: directory.appendingPathComponent("plain.img.lz")))
        }
        var result: [UInt8] = []
        for (number, start) in stride(from: 0, to: data.count, by: pieces).enumerated() {
            let name = "piece\(number)"
            try Data(data[start..<min(start + pieces, data.count)]).write(to: directory.appendingPathComponent(name))
            try ToolRunner.run("lzip", arguments + ["-f", name], in: directory)
            result += Array(try Data(contentsOf: directory.appendingPathComponent(name + ".lz")))
        }
        return result
    }

    private func open(_ compressed: [UInt8], _ layer: LzipLayer = LzipLayer()) async throws -> AnyBlockBackend {
        try await layer.wrap(try await CompressedImage.backend(compressed), for: ConnectionInfo())
    }

    private func assertRandomReadsMatch(_ export: AnyBlockBackend, _ data: [UInt8]) async throws {
        XCTAssertEqual(export.capabilities.size, UInt64(data.count))
        XCTAssertFalse(export.capabilities.isWritable)
        let all = try await export.readBytes(data.count, at: 0)
        XCTAssertTrue(all == data, "whole read differs")
        var generator = SeededGenerator(seed: 31)
        for _ in 0..<60 {
            let count = Int.random(in: 1...100_000, using: &generator)
            let offset = Int.random(in: 0...(data.count - count), using: &generator)
            let bytes = try await export.readBytes(count, at: UInt64(offset))
            XCTAssertTrue(bytes[...] == data[offset..<(offset + count)], "read of \(count) at \(offset) differs")
        }
    }

    func testFixedSizeMembersServeTheUncompressedBytes() async throws {
        let data = ToolRunner.sampleData(size: 1_500_000, seed: 41)
        try await assertRandomReadsMatch(
            try await open(try compress(data, ["-0"], pieces: 200_000), LzipLayer(maximumDepth: 2)), data)
    }

    func testVariableSizeMembersAndOneMemberServeTheUncompressedBytes() async throws {
        let data = ToolRunner.sampleData(size: 1_000_000, seed: 42)
        try await assertRandomReadsMatch(try await open(try compress(data, ["-0", "--member-size=100KiB"])), data)
        let single = try compress(data, ["-0"])
        try await assertRandomReadsMatch(try await open(single), data)
        let refused = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                _ = try await LzipLayer(maximumBlock: 65536).wrap(
                    try! await CompressedImage.backend(single), for: ConnectionInfo())
            }, code: .invalidArgument)
        XCTAssertTrue(refused?.message.contains("lzip-max-block=65536") ?? false, "\(String(describing: refused))")
    }

    func testWrongFormatTruncatedAndCorruptFilesAreRefusedOrFailTheRead() async throws {
        let data = ToolRunner.sampleData(size: 300_000, seed: 43)
        let compressed = try compress(data, ["-0"], pieces: 100_000)
        var trailer = compressed
        trailer[compressed.count - 3] ^= 0x55
        let cases: [(String, [UInt8], String)] = [
            ("xz", [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00] + [UInt8](repeating: 1, count: 64), "not an lzip file"),
            ("short", Array("LZIP".utf8), "not an lzip file"),
            ("truncated", Array(compressed.prefix(compressed.count - 7)), "truncated or corrupt"),
            ("trailer", trailer, "corrupt"),
            ("trailing data", compressed + Array("garbage".utf8), "corrupt"),
        ]
        for (name, bytes, expected) in cases {
            let error = await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in
                    _ = try await LzipLayer().wrap(try! await CompressedImage.backend(bytes), for: ConnectionInfo())
                }, code: .invalidArgument, name)
            XCTAssertTrue(error?.message.contains(expected) ?? false, "\(name): \(String(describing: error))")
        }
        // Damage inside the first member's data: the connection opens, that member's reads fail.
        var inside = compressed
        inside[30] ^= 0x55
        let export = try await open(inside)
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                _ = try await export.readBytes(10, at: 0)
            }, code: .ioError)
        XCTAssertTrue(error?.message.contains("corrupt") ?? false, "\(String(describing: error))")
        let later = try await export.readBytes(1000, at: 250_000)
        XCTAssertTrue(later[...] == data[250_000..<251_000])
    }

    func testParametersAreNbdkits() throws {
        let defaults = try LzipLayer(parameters: [:])
        XCTAssertEqual(defaults.maximumBlock, 512 << 20)
        XCTAssertEqual(defaults.maximumDepth, 8)
        let set = try LzipLayer(parameters: ["lzip-max-block": "1M", "lzip-max-depth": "2"])
        XCTAssertEqual(set.maximumBlock, 1 << 20)
        XCTAssertEqual(set.maximumDepth, 2)
        XCTAssertThrowsError(try LzipLayer(parameters: ["lzip-max-depth": "0"]))
        XCTAssertEqual(LzipLayer.filterName, "lzip")
    }
}

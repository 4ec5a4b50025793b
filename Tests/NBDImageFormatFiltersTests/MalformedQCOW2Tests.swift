import Foundation
import NBDCore
import NBDTestSupport
import XCTest

@testable import NBDImageFormatFilters

/// Images qcow2dec cannot serve are refused when a client connects, with the reason; corrupt table
/// entries fail only the requests that reach them, with EIO; random damage never crashes.
final class MalformedQCOW2Tests: XCTestCase {
    private func open(_ bytes: [UInt8]) async throws(NBDError) -> AnyBlockBackend {
        try await QCOW2DecLayer().wrap(AnyBlockBackend(BytesBackend(bytes)), for: ConnectionInfo())
    }

    private func assertRefused(
        _ bytes: [UInt8], code: NBDError.Code, _ expected: String, file: StaticString = #filePath, line: UInt = #line
    ) async {
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await self.open(bytes) }, code: code, file: file, line: line)
        XCTAssertTrue(error?.message.contains(expected) ?? false, "\(error?.message ?? "")", file: file, line: line)
    }

    private func image(_ change: (inout QCOW2Builder) -> Void) -> [UInt8] {
        var builder = QCOW2Builder()
        builder.clusters = [0: .data([1, 2, 3])]
        change(&builder)
        return builder.build()
    }

    func testImagesOfTheWrongFormatOrTruncatedAreRefused() async {
        await assertRefused([UInt8](repeating: 0xAB, count: 1 << 20), code: .invalidArgument, "not a qcow2 file")
        await assertRefused([], code: .invalidArgument, "not a qcow2 file")
        await assertRefused(Array(image { _ in }.prefix(60)), code: .invalidArgument, "truncated")
        await assertRefused(Array(image { _ in }.prefix(90)), code: .invalidArgument, "truncated")
        await assertRefused(image { $0.version = 4 }, code: .notSupported, "version 4")
        await assertRefused(image { $0.clusterBits = 22 }, code: .invalidArgument, "cluster_bits is 22")
        // The L1 table lies past the end of the file, or is too small for the virtual size.
        await assertRefused(image { $0.l1Offset = 1 << 30 }, code: .invalidArgument, "L1 table")
        await assertRefused(image { $0.l1Offset = 700 }, code: .invalidArgument, "L1 table")
        await assertRefused(image { $0.l1Size = 1 }, code: .invalidArgument, "needs 2")
        await assertRefused(image { $0.virtualSize = 1 << 62 }, code: .notSupported, "L1 table would have")
    }

    func testFeaturesQcow2decDoesNotDecodeAreRefusedWithTheReason() async {
        await assertRefused(image { $0.backingFile = "base.qcow2" }, code: .notSupported, "backing file ('base.qcow2')")
        await assertRefused(image { $0.encryption = 2 }, code: .notSupported, "encrypted")
        await assertRefused(image { $0.snapshots = 1 }, code: .notSupported, "internal snapshot")
        await assertRefused(image { $0.incompatibleFeatures = 1 }, code: .notSupported, "dirty")
        await assertRefused(image { $0.incompatibleFeatures = 2 }, code: .notSupported, "corrupt")
        await assertRefused(image { $0.incompatibleFeatures = 4 }, code: .notSupported, "external data file")
        await assertRefused(image { $0.incompatibleFeatures = 16 }, code: .notSupported, "extended L2")
        await assertRefused(image { $0.incompatibleFeatures = 1 << 40 }, code: .notSupported, "bits 40")
        await assertRefused(
            image {
                $0.incompatibleFeatures = 8
                $0.compressionType = 2
            }, code: .notSupported, "compression type 2")
    }

    func testCorruptTableEntriesFailOnlyTheRequestsThatReachThem() async throws {
        let bytes = image {
            $0.virtualSize = 200 * 512
            $0.clusters = [
                0: .data([9]),
                // Reserved bits, data past the end of the file, an unaligned offset, compressed data
                // outside the file.
                1: .entry(1 << 60 | 1 << 63),
                2: .entry(1 << 40),
                3: .entry(4096 + 100),
                4: .entry(1 << 62 | 1 << 50),
                // Compressed data that is not deflate.
                5: .entry(1 << 62 | 512),
            ]
            // The second L2 table is past the end of the file; the third has reserved bits.
            $0.l1Overrides = [1: 1 << 40, 2: 1 << 60 | 1024]
        }
        let export = try await open(bytes)
        for cluster in 1...5 {
            await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in _ = try await export.readBytes(512, at: UInt64(cluster) * 512) },
                code: .ioError, "cluster \(cluster)")
        }
        for offset: UInt64 in [64 * 512, 128 * 512] {
            await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in _ = try await export.readBytes(512, at: offset) }, code: .ioError)
            await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in _ = try await export.extents(count: 512, at: offset, flags: []) },
                code: .ioError)
        }
        // The good cluster and the tables' other entries still serve.
        let start = try await export.readBytes(2, at: 0)
        XCTAssertEqual(start, [9, 0])
        let startStatus = try await export.extents(count: 512, at: 0, flags: [])
        XCTAssertEqual(startStatus, [.data(512)])
        let unallocated = try await export.readBytes(512, at: 10 * 512)
        XCTAssertEqual(unallocated, [UInt8](repeating: 0, count: 512))
    }

    /// Seeded copies of a valid image with 1 to 4 bytes of its header, L1 table and first L2 table
    /// changed at random.
    private func damagedImages(count: Int) -> [[UInt8]] {
        var builder = QCOW2Builder()
        builder.virtualSize = 100 * 512
        builder.clusters = [0: .data([1]), 1: .zero, 70: .data([7]), 71: .entry(1 << 62 | 4096)]
        let original = builder.build()
        var generator = SeededGenerator(seed: 22)
        return (0..<count).map { _ in
            var bytes = original
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                bytes[Int.random(in: 0..<2048, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            return bytes
        }
    }

    /// Each damaged copy is refused, or serves every read and block status request with data or an error.
    func testRandomDamageNeverCrashes() async throws {
        var served = 0
        for bytes in damagedImages(count: 500) {
            guard let export = try? await open(bytes) else { continue }
            served += 1
            let size = export.capabilities.size
            for offset in [0, size / 2, size - min(size, 4096)] where size > 0 {
                _ = try? await export.readBytes(Int(min(4096, size - offset)), at: offset)
                _ = try? await export.extents(count: min(4096, size - offset), at: offset, flags: [])
            }
        }
        XCTAssertGreaterThan(
            served, 50, "almost every damaged image was refused: the damage is too heavy to test reads")
    }

    /// The same copies through the fuzz entry point and its invariants (a synchronous test: the entry
    /// point waits for its task on a semaphore, which must not block a cooperative thread).
    func testRandomDamageKeepsTheFuzzInvariants() {
        for bytes in damagedImages(count: 500) {
            bytes.withUnsafeBytes { QCOW2FuzzEntryPoints.image($0) }
        }
    }

    /// The seeds and finds of the libFuzzer target `Fuzz/QCOW2` replay through its entry point.
    func testFuzzCorpusReplays() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/Corpus/QCOW2").standardized
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        XCTAssertTrue(files.contains { $0.lastPathComponent.hasPrefix("seed-") }, "no seeds in \(directory.path)")
        for file in files.sorted(by: { $0.path < $1.path }) {
            let bytes = try Data(contentsOf: file)
            bytes.withUnsafeBytes { QCOW2FuzzEntryPoints.image($0) }
        }
    }
}

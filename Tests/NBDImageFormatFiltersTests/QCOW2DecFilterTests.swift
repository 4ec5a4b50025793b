import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

@testable import NBDImageFormatFilters

/// The qcow2dec filter over hand-made images: stored, zero and unallocated clusters read and
/// reported correctly, in both versions, shared between connections; writes refused.
final class QCOW2DecFilterTests: XCTestCase {
    private func open(_ bytes: [UInt8], layer: QCOW2DecLayer = QCOW2DecLayer()) async throws -> AnyBlockBackend {
        try await layer.wrap(AnyBlockBackend(BytesBackend(bytes)), for: ConnectionInfo())
    }

    private func sampleImage(version: UInt32, clusterBits: UInt32 = 9) -> QCOW2Builder {
        var builder = QCOW2Builder()
        builder.version = version
        builder.clusterBits = clusterBits
        builder.virtualSize = 200 << UInt64(clusterBits)
        let size = Int(builder.clusterSize)
        builder.clusters = [
            0: .data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
            1: .data([UInt8](repeating: 0x55, count: size)),
            3: .data([UInt8](repeating: 0x33, count: size)),
            2: .data([UInt8](repeating: 0x22, count: size)),
            5: .zero,
            // The second L2 table (64 entries each at 512-byte clusters).
            70: .data([UInt8](repeating: 0x70, count: 100)),
        ]
        return builder
    }

    func testStoredZeroAndUnallocatedClustersReadAsTheDiskInBothVersions() async throws {
        for version: UInt32 in [2, 3] {
            for bits: UInt32 in [9, 16] {
                let builder = sampleImage(version: version, clusterBits: bits)
                let export = try await open(builder.build())
                let disk = builder.expectedDisk()
                XCTAssertEqual(export.capabilities.size, UInt64(disk.count))
                XCTAssertFalse(export.capabilities.isWritable)
                XCTAssertTrue(export.capabilities.canExtents)
                XCTAssertTrue(export.capabilities.canMultiConn)
                let whole = try await export.readBytes(disk.count, at: 0)
                XCTAssertEqual(whole, disk, "v\(version) cluster_bits \(bits)")
                // Unaligned reads across cluster boundaries, inside and across L2 tables.
                var generator = SeededGenerator(seed: UInt64(version * 100 + bits))
                for _ in 0..<200 {
                    let offset = Int.random(in: 0..<disk.count, using: &generator)
                    let count = Int.random(in: 1...min(disk.count - offset, 3 << Int(bits)), using: &generator)
                    let bytes = try await export.readBytes(count, at: UInt64(offset))
                    XCTAssertEqual(bytes, Array(disk[offset..<(offset + count)]), "v\(version) \(count) at \(offset)")
                }
            }
        }
    }

    func testBlockStatusComesFromTheClusterTables() async throws {
        let builder = sampleImage(version: 3)
        let export = try await open(builder.build())
        let c: UInt64 = 512
        let extents = try await export.extents(count: 200 * c, at: 0, flags: [])
        XCTAssertEqual(
            extents,
            [.data(4 * c), .hole(66 * c), .data(c), .hole(129 * c)])
        // Unaligned start and end; REQ_ONE gives the first run only.
        let unaligned = try await export.extents(count: 3 * c, at: c + 100, flags: [])
        XCTAssertEqual(unaligned, [.data(3 * c - 100), .hole(100)])
        let acrossAHole = try await export.extents(count: 10 * c, at: 3 * c + 1, flags: [])
        XCTAssertEqual(acrossAHole, [.data(c - 1), .hole(9 * c + 1)])
        let firstRun = try await export.extents(count: 100 * c, at: 0, flags: .requestOne)
        XCTAssertEqual(firstRun, [.data(4 * c)])
        let oneHole = try await export.extents(count: 100, at: 5 * c + 7, flags: .requestOne)
        XCTAssertEqual(oneHole, [.hole(100)])
    }

    func testWritesZeroesAndTrimsAreRefusedAsReadOnly() async throws {
        let export = try await open(sampleImage(version: 3).build())
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await export.writeBytes([1], at: 0) }, code: .notPermitted)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await export.zero(count: 1, at: 0, flags: []) }, code: .notPermitted)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await export.trim(count: 1, at: 0, flags: []) }, code: .notPermitted)
    }

    func testConnectionsShareTheImageAndL2TablesAreReadOnce() async throws {
        let builder = sampleImage(version: 3)
        let counting = CountingBackend(bytes: builder.build())
        let layer = QCOW2DecLayer()
        let first = try await layer.wrap(AnyBlockBackend(counting), for: ConnectionInfo())
        // The header, the L1 table and the first L2 table (to see whether the image is compressed).
        XCTAssertEqual(counting.reads, 3)
        _ = try await first.readBytes(512, at: 0)
        // The data: the first L2 table was cached when it was read at the start.
        XCTAssertEqual(counting.reads, 4)
        let second = try await layer.wrap(AnyBlockBackend(counting), for: ConnectionInfo())
        _ = try await second.readBytes(4096, at: 4096)
        XCTAssertEqual(counting.reads, 4, "the second connection re-read the header or a cached table")
        // Clusters 0 to 3 lie one after the other in the file: one read.
        _ = try await second.readBytes(4 * 512, at: 0)
        XCTAssertEqual(counting.reads, 5, "contiguous stored clusters are read in one request")
        // Cluster 3, holes, then cluster 70 in the second L2 table: its table, then two reads of data.
        _ = try await second.readBytes(68 * 512, at: 3 * 512)
        XCTAssertEqual(counting.reads, 8)
    }

    /// 4 KiB clusters: 0 to 3 compressed and packed one after the other, 4 stored, 5 and 6
    /// compressed again, 7 unallocated, 8 compressed.
    private func compressedImage() -> QCOW2Builder {
        var builder = QCOW2Builder()
        builder.clusterBits = 12
        builder.virtualSize = 12 << 12
        func pattern(_ seed: Int) -> [UInt8] { (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* seed &+ seed) } }
        builder.clusters = [
            0: .compressed(pattern(3)), 1: .compressed(pattern(5)), 2: .compressed(pattern(7)),
            3: .compressed(pattern(11)), 4: .data(pattern(13)), 5: .compressed(pattern(17)),
            6: .compressed(Array(pattern(19)[..<1000])), 8: .compressed(pattern(23)),
        ]
        return builder
    }

    func testCompressedClustersNextToEachOtherAreReadInOneRequest() async throws {
        let builder = compressedImage()
        let disk = builder.expectedDisk()
        let counting = CountingBackend(bytes: builder.build())
        let export = try await QCOW2DecLayer().wrap(AnyBlockBackend(counting), for: ConnectionInfo())
        XCTAssertEqual(counting.reads, 3)
        // Clusters 0 to 3: their compressed data lie together in the file, so one read.
        let firstFour = try await export.readBytes(4 << 12, at: 0)
        XCTAssertEqual(firstFour, Array(disk[0..<(4 << 12)]))
        XCTAssertEqual(counting.reads, 4, "adjacent compressed clusters are read from the file in one request")
        // Part of 2 and 3, stored 4, compressed 5 and 6, hole 7, part of 8: four reads (the
        // compressed data of 8 follows that of 6 in the file, but the hole between ends the run).
        let start = (2 << 12) + 100
        let end = (8 << 12) + 50
        let across = try await export.readBytes(end - start, at: UInt64(start))
        XCTAssertEqual(across, Array(disk[start..<end]))
        XCTAssertEqual(counting.reads, 8)
        // Every piece reads as the disk, whole or in part.
        let whole = try await export.readBytes(disk.count, at: 0)
        XCTAssertEqual(whole, disk)
        var generator = SeededGenerator(seed: 12)
        for _ in 0..<100 {
            let offset = Int.random(in: 0..<disk.count, using: &generator)
            let count = Int.random(in: 1...min(disk.count - offset, 3 << 12), using: &generator)
            let bytes = try await export.readBytes(count, at: UInt64(offset))
            XCTAssertEqual(bytes, Array(disk[offset..<(offset + count)]), "\(count) at \(offset)")
        }
    }

    func testReadsOfACompressedImageGoToTheServersPoolAndStoredOnesStayInline() async throws {
        let compressed = try await open(compressedImage().build())
        XCTAssertTrue(compressed.capabilities.slowOperations.contains(.read))
        XCTAssertTrue(compressed.capabilities.canMultiConn)
        let stored = try await open(sampleImage(version: 3).build())
        XCTAssertFalse(stored.capabilities.slowOperations.contains(.read))
        XCTAssertTrue(stored.capabilities.suspendingOperations.isEmpty)
        // A first L1 entry pointing past the end of the file leaves the question open; the reads
        // that reach it fail, not the connection.
        var corrupt = compressedImage()
        corrupt.l1Overrides = [0: 1 << 40]
        let refusedLater = try await open(corrupt.build())
        XCTAssertFalse(refusedLater.capabilities.slowOperations.contains(.read))
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await refusedLater.readBytes(1, at: 0) }, code: .ioError)
    }

    func testTheL2TableCacheIsBoundedAndDropsTheLeastRecentlyUsed() {
        let cache = L2TableCache(bytes: 2 * 512, tableBytes: 512)
        XCTAssertEqual(cache.capacity, 2)
        cache.insert([1], at: 512)
        cache.insert([2], at: 1024)
        XCTAssertEqual(cache.table(at: 512), [1])
        cache.insert([3], at: 1536)
        XCTAssertEqual(cache.count, 2)
        XCTAssertNil(cache.table(at: 1024), "the least recently used table was kept")
        XCTAssertEqual(cache.table(at: 512), [1])
        XCTAssertEqual(cache.table(at: 1536), [3])
    }

    func testAMissingLibzstdIsAnErrorNamingTheDebianPackage() {
        guard case .failure(let error) = Libzstd.load("libzstd-not-installed.so.1") else {
            return XCTFail("a library that does not exist was loaded")
        }
        XCTAssertEqual(error.code, .notSupported)
        XCTAssertTrue(error.message.contains("libzstd1"), error.message)
    }

    func testTheFilterIsInTheCatalogWithoutParameters() throws {
        XCTAssertEqual(QCOW2DecLayer.filterName, "qcow2dec")
        XCTAssertTrue(QCOW2DecLayer.parameters.isEmpty)
    }
}

/// A file in memory that counts the reads reaching it.
final class CountingBackend: BlockBackend, Sendable {
    let bytes: BytesBackend
    private let counter = LockedValue(0)
    var reads: Int { counter.withLock { $0 } }

    init(bytes: [UInt8]) {
        self.bytes = BytesBackend(bytes)
    }

    var capabilities: Capabilities { bytes.capabilities }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        counter.withLock { $0 += 1 }
        try await bytes.read(into: buffer, at: offset, flags: flags)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }
}

import NBDCore
import NBDTestSupport
import XCTest

@testable import NBDImageFormatFilters

/// qcow2dec reports where the file holds a range (so the server can send it with `sendfile`) only
/// for stored clusters that follow one another in the file and whose tables are cached.
final class QCOW2FileRegionTests: XCTestCase {
    /// 512-byte clusters: 0 to 3 stored one after the other, 4 unallocated, 5 zero-flagged, 6
    /// pointing back at cluster 0's data, 70 stored in the second L2 table (not cached at open).
    private func image() -> QCOW2Builder {
        var builder = QCOW2Builder()
        builder.virtualSize = 200 << 9
        builder.clusters = [
            0: .data((0..<512).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
            1: .data([UInt8](repeating: 0x11, count: 512)),
            2: .data([UInt8](repeating: 0x22, count: 512)),
            3: .data([UInt8](repeating: 0x33, count: 512)),
            5: .zero,
            // Header, L1 table and two L2 tables come first: cluster 0's data is at 4 * 512.
            6: .entry(4 * 512 | 1 << 63),
            70: .data([UInt8](repeating: 0x70, count: 512)),
        ]
        return builder
    }

    private func open(_ file: [UInt8]) async throws -> AnyBlockBackend {
        try await QCOW2DecLayer().wrap(AnyBlockBackend(RegionBackend(file)), for: ConnectionInfo())
    }

    /// Checks that the region holds the bytes a read of the range returns.
    private func assertRegion(
        _ export: AnyBlockBackend, _ count: Int, at offset: UInt64, file: [UInt8], line: UInt = #line
    ) async throws {
        guard let region = await export.fileRegion(count: count, at: offset) else {
            return XCTFail("no file region for \(count) bytes at \(offset)", line: line)
        }
        XCTAssertEqual(region.descriptor, RegionBackend.descriptor, line: line)
        let host = Int(region.offset)
        let read = try await export.readBytes(count, at: offset)
        XCTAssertEqual(Array(file[host..<(host + count)]), read, line: line)
    }

    func testContiguousStoredClustersHaveARegion() async throws {
        let builder = image()
        let file = builder.build()
        let export = try await open(file)
        try await assertRegion(export, 4 * 512, at: 0, file: file)
        try await assertRegion(export, 3 * 512 - 100, at: 512 + 100, file: file)
        try await assertRegion(export, 1, at: 3 * 512 + 511, file: file)
        try await assertRegion(export, 512, at: 6 * 512, file: file)
    }

    func testUnallocatedZeroAndNonContiguousRangesHaveNone() async throws {
        let export = try await open(image().build())
        let none = await export.fileRegion(count: 512, at: 4 * 512)
        XCTAssertNil(none, "unallocated")
        let zero = await export.fileRegion(count: 512, at: 5 * 512)
        XCTAssertNil(zero, "zero-flagged")
        let intoHole = await export.fileRegion(count: 2 * 512, at: 3 * 512)
        XCTAssertNil(intoHole, "stored, then unallocated")
        let backwards = await export.fileRegion(count: 512 + 1, at: 6 * 512 - 1)
        XCTAssertNil(backwards, "cluster 6's data is not after cluster 5's")
        let past = await export.fileRegion(count: 512, at: 150 * 512)
        XCTAssertNil(past, "no L2 table at all")
    }

    func testATableNotYetCachedGivesNoneUntilAReadCachesIt() async throws {
        let builder = image()
        let file = builder.build()
        let export = try await open(file)
        let before = await export.fileRegion(count: 512, at: 70 * 512)
        XCTAssertNil(before, "its L2 table was never read")
        _ = try await export.readBytes(512, at: 70 * 512)
        try await assertRegion(export, 512, at: 70 * 512, file: file)
    }

    func testCompressedClustersHaveNone() async throws {
        var builder = QCOW2Builder()
        builder.clusterBits = 12
        builder.virtualSize = 8 << 12
        builder.clusters = [
            0: .compressed([UInt8](repeating: 3, count: 4096)), 1: .data([UInt8](repeating: 4, count: 4096)),
        ]
        let file = builder.build()
        let export = try await open(file)
        let compressed = await export.fileRegion(count: 4096, at: 0)
        XCTAssertNil(compressed)
        let across = await export.fileRegion(count: 4096, at: 2048)
        XCTAssertNil(across)
        try await assertRegion(export, 4096, at: 4096, file: file)
    }

    func testALayerBelowWithoutRegionsGivesNone() async throws {
        let export = try await QCOW2DecLayer().wrap(
            AnyBlockBackend(BytesBackend(image().build())), for: ConnectionInfo())
        let region = await export.fileRegion(count: 512, at: 0)
        XCTAssertNil(region)
    }
}

/// A file in memory that says it is open as descriptor ``descriptor``.
private struct RegionBackend: BlockBackend {
    static let descriptor: Int32 = 1234
    let bytes: BytesBackend

    init(_ file: [UInt8]) { bytes = BytesBackend(file) }

    var capabilities: Capabilities { bytes.capabilities }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        try await bytes.read(into: buffer, at: offset, flags: flags)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }

    func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? {
        FileRegion(descriptor: Self.descriptor, offset: offset)
    }
}

import NBDCore
import NBDTestSupport
import NBDTestingFilters
import XCTest

/// The ddrescue filter and its mapfile.
final class DDRescueFilterTests: XCTestCase {
    let mapfile = """
        # Mapfile. Created by GNU ddrescue version 1.27
        # current_pos  current_status  current_pass
        0x00010000     +               1
        #      pos        size  status
        0x00000000  0x00010000  +
        0x00010000  0x00000200  -
        0x00010200  0x00001000  +
        0x00011200  0x00000e00  +
        0x00012000  0x00001000  ?
        0x00013000  077777      *
        """

    func testReadsOfRescuedBlocksPassAndAnyOtherFailsWithEIO() async throws {
        let map = try RescueMap(parsing: mapfile)
        let filter = DDRescueFilter(wrapping: TestMemoryBackend(size: 1 << 20), map: map)
        XCTAssertFalse(filter.capabilities.isWritable)
        XCTAssertEqual(filter.capabilities.cache, CacheSupport.none)
        _ = try await filter.readBytes(65536, at: 0)
        _ = try await filter.readBytes(0x2000 - 0x200, at: 0x10200)
        for (count, offset): (Int, UInt64) in [(512, 0x10000), (2, 0xffff), (1, 0x12000), (512, 0x13000), (1, 1 << 19)] {
            await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in _ = try await filter.readBytes(count, at: offset) }, code: .ioError,
                "\(count) at \(offset)")
        }
    }

    func testBadLinesAndAMissingFileAreRefusedNamingThem() {
        XCTAssertThrowsError(try RescueMap(parsing: "0 +\n0x0 zz +\n", source: "x.map")) { error in
            XCTAssertTrue("\(error)".contains("x.map line 2"), "\(error)")
        }
        XCTAssertThrowsError(try DDRescueLayer(parameters: [:])) { error in
            XCTAssertTrue("\(error)".contains("ddrescue-mapfile=... is required"), "\(error)")
        }
        XCTAssertThrowsError(try DDRescueLayer(parameters: ["ddrescue-mapfile": "/nonexistent.map"])) { error in
            XCTAssertTrue("\(error)".contains("ddrescue-mapfile=/nonexistent.map"), "\(error)")
        }
    }
}

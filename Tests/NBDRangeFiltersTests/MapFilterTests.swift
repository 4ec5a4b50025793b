import NBDCore
import NBDRangeFilters
import NBDTestSupport
import XCTest

/// The map filter: rules, precedence, splitting and the EIO beyond the end.
final class MapFilterTests: XCTestCase {
    private func rules(_ texts: String...) throws -> RangeMap {
        var list: [RangeMap.Rule] = []
        for text in texts { list.append(try RangeMap.Rule(parsing: text)) }
        return RangeMap(rules: list)
    }

    private func numberedDisk() async throws -> TestMemoryBackend {
        let disk = TestMemoryBackend(size: 4096)
        for sector in 0..<8 {
            try await disk.writeBytes([UInt8](repeating: UInt8(sector), count: 512), at: UInt64(sector * 512))
        }
        return disk
    }

    func testSwappingTwoSectorsAndASplitRead() async throws {
        let disk = try await numberedDisk()
        let filter = MapFilter(wrapping: disk, map: try rules("0-511:512", "512-1023:0"))
        XCTAssertEqual(filter.capabilities.size, 4096)
        let read = try await filter.readBytes(1536, at: 0)
        XCTAssertEqual(Array(read[0..<512]), [UInt8](repeating: 1, count: 512))
        XCTAssertEqual(Array(read[512..<1024]), [UInt8](repeating: 0, count: 512))
        XCTAssertEqual(Array(read[1024..<1536]), [UInt8](repeating: 2, count: 512))
        try await filter.writeBytes([9, 9], at: 511)
        let below = try await disk.readBytes(1024, at: 0)
        XCTAssertEqual(below[1023], 9, "byte 511 lands at 1023")
        XCTAssertEqual(below[0], 9, "byte 512 lands at 0")
    }

    func testTheFirstRuleGivenWinsWhereRulesOverlap() async throws {
        let disk = try await numberedDisk()
        let filter = MapFilter(wrapping: disk, map: try rules("0-1023:2048", "512-1535:3072"))
        let read = try await filter.readBytes(2048, at: 0)
        XCTAssertEqual([read[0], read[600], read[1100], read[1600]], [4, 5, 7, 3])
    }

    func testMappingBeyondTheEndFailsWithEIONamingTheRule() async throws {
        let filter = MapFilter(wrapping: TestMemoryBackend(size: 4096), map: try rules("0-1023:3584"))
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await filter.readBytes(1024, at: 0) }, code: .ioError)
        XCTAssertTrue(error?.message.contains("map=0-1023:3584") == true, "\(String(describing: error))")
        _ = try await filter.readBytes(512, at: 0)
    }

    func testExtentsFollowTheMap() async throws {
        let filter = MapFilter(wrapping: HalfHole(next: TestMemoryBackend(size: 4096)), map: try rules("0-1023:2048"))
        let extents = try await filter.extents(count: 4096, at: 0, flags: [])
        XCTAssertEqual(extents, [.hole(1024), .data(1024), .hole(2048)])
    }

    func testRulesAreParsedOrRefusedNamingTheParameter() throws {
        XCTAssertEqual(try MapLayer(parameters: ["map": "1-2:3"]).map, try rules("1-2:3"))
        for bad in ["1-2", "5-1:0", "a-2:3", "1:2-3"] {
            XCTAssertThrowsError(try MapLayer(parameters: ["map": bad]), bad) { error in
                XCTAssertTrue("\(error)".contains("map=\(bad)"), "\(error)")
            }
        }
    }
}

/// Data in the first half, a hole in the second.
private struct HalfHole<Next: BlockBackend>: Filter {
    let next: Next
    var capabilities: Capabilities {
        var caps = next.capabilities
        caps.canExtents = true
        return caps
    }

    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let half = next.capabilities.size / 2
        if offset >= half { return [.hole(count)] }
        return [.data(min(count, half - offset))]
    }
}

import NBDCore
import NBDRangeFilters
import NBDTestSupport
import XCTest

/// The truncate filter over a layer below of 10,000 bytes (not a multiple of anything useful).
final class TruncateFilterTests: XCTestCase {
    let realSize: UInt64 = 10_000

    func makeBackend(canFastZero: Bool = true) -> TestMemoryBackend {
        TestMemoryBackend(capabilities: Capabilities(size: realSize, canFastZero: canFastZero))
    }

    func testSizesFollowNbdkitsOrderTruncateThenRoundUpThenRoundDown() throws {
        let backend = makeBackend()
        XCTAssertEqual(try TruncateFilter(wrapping: backend).capabilities.size, 10_000)
        XCTAssertEqual(try TruncateFilter(wrapping: backend, truncate: 4000).capabilities.size, 4000)
        XCTAssertEqual(try TruncateFilter(wrapping: backend, roundUp: 512).capabilities.size, 10_240)
        XCTAssertEqual(try TruncateFilter(wrapping: backend, roundDown: 512).capabilities.size, 9728)
        XCTAssertEqual(try TruncateFilter(wrapping: backend, truncate: 5000, roundUp: 4096).capabilities.size, 8192)
        XCTAssertThrowsError(try TruncateFilter(wrapping: backend, roundUp: 1000))
        XCTAssertThrowsError(try TruncateLayer(parameters: ["round-down": "0"])) { error in
            XCTAssertTrue("\(error)".contains("round-down"), "\(error)")
        }
        XCTAssertThrowsError(try TruncateFilter(wrapping: backend, truncate: UInt64(Int64.max), roundUp: 512))
    }

    func testReadsPastTheRealEndReturnZeroes() async throws {
        let backend = makeBackend()
        try await backend.writeBytes([UInt8](repeating: 7, count: 100), at: realSize - 100)
        let filter = try TruncateFilter(wrapping: backend, truncate: 20_000)
        let straddling = try await filter.readBytes(200, at: realSize - 100)
        XCTAssertEqual(straddling, [UInt8](repeating: 7, count: 100) + [UInt8](repeating: 0, count: 100))
        let beyond = try await filter.readBytes(100, at: 15_000)
        XCTAssertEqual(beyond, [UInt8](repeating: 0, count: 100))
    }

    func testZeroesPastTheRealEndAreAcceptedAndOtherDataIsRefusedWithENOSPC() async throws {
        let backend = makeBackend()
        let filter = try TruncateFilter(wrapping: backend, truncate: 20_000)
        try await filter.writeBytes(
            [UInt8](repeating: 1, count: 100) + [UInt8](repeating: 0, count: 100), at: realSize - 100)
        let written = try await backend.readBytes(100, at: realSize - 100)
        XCTAssertEqual(written, [UInt8](repeating: 1, count: 100))
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                try await filter.writeBytes([UInt8](repeating: 2, count: 200), at: self.realSize - 100)
            }, code: .noSpace)
        let after = try await backend.readBytes(100, at: realSize - 100)
        XCTAssertEqual(
            after, [UInt8](repeating: 1, count: 100),
            "a refused write changes nothing below")
    }

    func testZeroTrimAndCacheAreCutAtTheRealEnd() async throws {
        let log = OperationLog()
        let filter = try TruncateFilter(
            wrapping: RecordingFilter(wrapping: makeBackend(canFastZero: false), log: log, connection: 1),
            truncate: 20_000)
        try await filter.zero(count: 200, at: realSize - 100, flags: [])
        try await filter.trim(count: 200, at: realSize - 100, flags: [])
        try await filter.cache(count: 200, at: realSize - 100, flags: [])
        try await filter.zero(count: 100, at: 15_000, flags: .fastZero)
        try await filter.trim(count: 100, at: 15_000, flags: [])
        XCTAssertEqual(log.all.map(\.count), [100, 100, 100])
        XCTAssertTrue(filter.capabilities.canFastZero)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.zero(count: 100, at: 0, flags: .fastZero) },
            code: .notSupported, "the layer below cannot zero fast")
    }

    func testExtentsReportTheTailAsAHole() async throws {
        let filter = try TruncateFilter(wrapping: makeBackend(), truncate: 20_000)
        XCTAssertTrue(filter.capabilities.canExtents)
        let tail = try await filter.extents(count: 1000, at: 15_000, flags: [])
        let straddling = try await filter.extents(count: 200, at: realSize - 100, flags: [])
        XCTAssertEqual(tail, [.hole(1000)])
        XCTAssertEqual(straddling, [.data(100), .hole(100)])
    }
}

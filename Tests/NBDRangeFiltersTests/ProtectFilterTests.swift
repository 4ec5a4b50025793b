import NBDCore
import NBDRangeFilters
import NBDTestSupport
import XCTest

/// The protect filter: parsing nbdkit's ranges, and refusing only requests that change protected bytes.
final class ProtectFilterTests: XCTestCase {
    func testRangesParseDecimalOctalHexOpenEndsAndComplements() throws {
        XCTAssertEqual(try ProtectedRanges(parsing: ["0-511"]).ranges, [0...511])
        XCTAssertEqual(try ProtectedRanges(parsing: ["0x200-0x3ff"]).ranges, [512...1023])
        XCTAssertEqual(try ProtectedRanges(parsing: ["010-017"]).ranges, [8...15])
        XCTAssertEqual(try ProtectedRanges(parsing: ["-99"]).ranges, [0...99])
        XCTAssertEqual(try ProtectedRanges(parsing: ["100-"]).ranges, [100...ProtectedRanges.end])
        XCTAssertEqual(
            try ProtectedRanges(parsing: ["~100-199"]).ranges, [0...99, 200...ProtectedRanges.end])
        XCTAssertEqual(try ProtectedRanges(parsing: ["0-9", "10-19", "15-30", "40-50"]).ranges, [0...30, 40...50])
        for bad in ["100", "9-1", "1K-2K", "a-b"] {
            XCTAssertThrowsError(try ProtectedRanges(parsing: [bad]), bad) { error in
                XCTAssertTrue("\(error)".contains("protect=\(bad)"), "\(error)")
            }
        }
    }

    func makeFilter(_ values: [String]) async throws -> (
        ProtectFilter<RecordingFilter<TestMemoryBackend>>, TestMemoryBackend, OperationLog
    ) {
        let backend = TestMemoryBackend(size: 65536)
        try await backend.writeBytes([UInt8](repeating: 0xAA, count: 512), at: 0)
        let log = OperationLog()
        let filter = ProtectFilter(
            wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1),
            protecting: try ProtectedRanges(parsing: values))
        return (filter, backend, log)
    }

    func testWritesThatChangeProtectedBytesFailWithEPERMAndChangeNothing() async throws {
        let (filter, backend, _) = try await makeFilter(["0-511"])
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.writeBytes([UInt8](repeating: 1, count: 1024), at: 0) },
            code: .notPermitted)
        let below = try await backend.readBytes(1024, at: 0)
        XCTAssertEqual(below, [UInt8](repeating: 0xAA, count: 512) + [UInt8](repeating: 0, count: 512))
    }

    func testWritesThatLeaveProtectedBytesAsTheyAreSucceed() async throws {
        let (filter, backend, _) = try await makeFilter(["0-511"])
        let data = [UInt8](repeating: 0xAA, count: 512) + [UInt8](repeating: 5, count: 512)
        try await filter.writeBytes(data, at: 0)
        let below = try await backend.readBytes(1024, at: 0)
        XCTAssertEqual(below, data)
        try await filter.writeBytes([UInt8](repeating: 9, count: 100), at: 4096)
    }

    func testZeroNeedsProtectedBytesToReadAsZeroes() async throws {
        let (filter, _, _) = try await makeFilter(["0-511", "8192-9000"])
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.zero(count: 4096, at: 0, flags: []) }, code: .notPermitted)
        try await filter.zero(count: 4096, at: 8192, flags: [])
    }

    func testTrimLeavesProtectedPartsOutOrFailsWhenTheyHoldData() async throws {
        let (filter, _, log) = try await makeFilter(["0-511", "1024-2047"])
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.trim(count: 4096, at: 0, flags: []) }, code: .notPermitted)
        XCTAssertEqual(log.count(of: .trim), 0)
        try await filter.trim(count: 4096, at: 512, flags: [])
        XCTAssertEqual(
            log.all.filter { $0.command == .trim }.map { [$0.offset, $0.count] }, [[512, 512], [2048, 2560]])
    }

    func testInvertedRangeProtectsEverythingOutsideIt() async throws {
        let (filter, _, _) = try await makeFilter(["~4096-8191"])
        try await filter.writeBytes([UInt8](repeating: 3, count: 4096), at: 4096)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.writeBytes([3], at: 8192) }, code: .notPermitted)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.writeBytes([3], at: 4095) }, code: .notPermitted)
    }

    func testLayerTakesEveryProtectValue() throws {
        var parameters = ParameterValues()
        parameters.append("protect", "0-99")
        parameters.append("protect", "200-299")
        XCTAssertEqual(try ProtectLayer(parameters: parameters).protected.ranges, [0...99, 200...299])
    }
}

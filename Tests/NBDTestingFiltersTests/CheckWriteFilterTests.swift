import NBDCore
import NBDTestSupport
import NBDTestingFilters
import XCTest

/// The checkwrite filter: writes become comparisons, zeroes and trims become checks for zeroes.
final class CheckWriteFilterTests: XCTestCase {
    private func makeStack(extents: Bool = false) async throws -> (CheckWriteFilter<RecordingFilter<TestMemoryBackend>>, OperationLog) {
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 3 << 20, isWritable: false, canExtents: extents).readOnly)
        // Put data at 1 MiB so the rest reads as zero.
        let data = [UInt8](repeating: 0xab, count: 4096)
        try await backend.writeBytes(data, at: 1 << 20, flags: [])
        let log = OperationLog()
        return (CheckWriteFilter(wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1)), log)
    }

    func testAdvertisesAWritableExportOverAReadOnlyLayer() async throws {
        let (filter, _) = try await makeStack()
        XCTAssertTrue(filter.capabilities.isWritable)
        XCTAssertTrue(filter.capabilities.canZero && filter.capabilities.canTrim && filter.capabilities.canFastZero)
        XCTAssertTrue(filter.capabilities.canMultiConn)
        XCTAssertEqual(filter.capabilities.fua, .native)
        XCTAssertTrue(CheckWriteLayer.opensLayerBelowReadOnly)
    }

    func testMatchingWriteSucceedsWithoutWritingAndADifferentOneFailsWithEIO() async throws {
        let (filter, log) = try await makeStack()
        let same = [UInt8](repeating: 0xab, count: 512)
        try await filter.writeBytes(same, at: (1 << 20) + 512, flags: [.fua])
        var different = same
        different[511] = 0
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                try await filter.writeBytes(different, at: 1 << 20, flags: [])
            }, code: .ioError)
        try await filter.flush(flags: [])
        XCTAssertEqual(log.count(of: .write), 0)
        XCTAssertEqual(log.count(of: .flush), 0)
        XCTAssertEqual(log.count(of: .read), 2)
    }

    func testZeroAndTrimCheckThatTheRangeReadsAsZero() async throws {
        let (filter, log) = try await makeStack()
        try await filter.zero(count: 1 << 20, at: 0, flags: [])
        try await filter.trim(count: 4096, at: 2 << 20, flags: [])
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.zero(count: 8192, at: (1 << 20) - 4096, flags: []) }, code: .ioError)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.trim(count: 1, at: (1 << 20) + 4095, flags: []) }, code: .ioError)
        // Without block status, a fast zero cannot know without reading: ENOTSUP, as nbdkit.
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.zero(count: 4096, at: 0, flags: [.fastZero]) }, code: .notSupported)
        XCTAssertEqual(log.count(of: .writeZeroes) + log.count(of: .trim) + log.count(of: .write), 0)
    }

    func testZeroSkipsReadingWhatBlockStatusCallsZero() async throws {
        let backend = TestMemoryBackend(size: 1 << 20)
        let sparse = SparseAbove(next: backend, dataEnd: 4096)
        let log = OperationLog()
        let filter = CheckWriteFilter(wrapping: RecordingFilter(wrapping: sparse, log: log, connection: 1))
        try await filter.zero(count: 1 << 19, at: 4096, flags: [.fastZero])
        XCTAssertEqual(log.count(of: .read), 0)
        try await filter.zero(count: 8192, at: 0, flags: [])
        XCTAssertEqual(log.count(of: .read), 1)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.zero(count: 8192, at: 0, flags: [.fastZero]) }, code: .notSupported)
    }
}

/// A backend whose first `dataEnd` bytes are data and the rest a hole, by block status.
private struct SparseAbove<Next: BlockBackend>: Filter {
    let next: Next
    let dataEnd: UInt64
    var capabilities: Capabilities {
        var caps = next.capabilities
        caps.canExtents = true
        return caps
    }

    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        offset < dataEnd ? [.data(dataEnd - offset), .hole(count)] : [.hole(count)]
    }
}

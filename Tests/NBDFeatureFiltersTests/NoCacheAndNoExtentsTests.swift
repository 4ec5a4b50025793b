import NBDCore
import NBDFeatureFilters
import NBDTestSupport
import XCTest

/// The nocache and noextents filters.
final class NoCacheAndNoExtentsTests: XCTestCase {
    func makeStack(_ mode: CacheMode) -> (NoCacheFilter<RecordingFilter<TestMemoryBackend>>, OperationLog) {
        let log = OperationLog()
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 4 << 20, cache: .native))
        return (NoCacheFilter(wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1), mode: mode), log)
    }

    func testNoneModeDoesNotAdvertiseCache() async throws {
        let (filter, log) = makeStack(.none)
        XCTAssertEqual(filter.capabilities.cache, CacheSupport.none)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.cache(count: 4096, at: 0, flags: []) },
            code: .invalidArgument)
        XCTAssertTrue(log.all.isEmpty)
    }

    func testEmulateModeReadsTheRangeInChunks() async throws {
        let (filter, log) = makeStack(.emulate)
        XCTAssertEqual(filter.capabilities.cache, .emulated)
        try await filter.cache(count: 3 << 20, at: 0, flags: [])
        XCTAssertEqual(log.all.map(\.command), [.read, .read, .read])
        XCTAssertEqual(log.count(of: .cache), 0)
    }

    func testNopModeAdvertisesCacheAndDoesNothing() async throws {
        let (filter, log) = makeStack(.nop)
        XCTAssertEqual(filter.capabilities.cache, .native)
        try await filter.cache(count: 4096, at: 0, flags: [])
        XCTAssertTrue(log.all.isEmpty)
    }

    func testCacheModeParameter() throws {
        XCTAssertEqual(try NoCacheLayer(parameters: ["cachemode": "nop"]).mode, .nop)
        XCTAssertEqual(try NoCacheLayer(parameters: [:]).mode, CacheMode.none)
        XCTAssertThrowsError(try NoCacheLayer(parameters: ["cachemode": "yes"])) { error in
            XCTAssertTrue("\(error)".contains("cachemode=yes"), "\(error)")
        }
    }

    func testNoExtentsHidesAllocationAndNeverAsksBelow() async throws {
        let log = OperationLog()
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20, canExtents: true))
        let filter = NoExtentsFilter(wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1))
        XCTAssertFalse(filter.capabilities.canExtents)
        let extents = try await filter.extents(count: 65536, at: 0, flags: [])
        XCTAssertEqual(extents, [.data(65536)])
        XCTAssertTrue(log.all.isEmpty)
        let layered = try await NoExtentsLayer(parameters: [:]).wrap(AnyBlockBackend(backend), for: ConnectionInfo())
        XCTAssertFalse(layered.capabilities.canExtents)
    }
}

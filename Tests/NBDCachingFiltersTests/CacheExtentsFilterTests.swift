import NBDCore
import NBDCachingFilters
import NBDTestSupport
import XCTest

/// The (deprecated) cacheextents filter: one answer shared by every connection, forgotten on writes.
final class CacheExtentsFilterTests: XCTestCase {
    /// Reports 64 KiB extents alternating data and hole, and records what it was asked.
    private struct StripedExtents<Next: BlockBackend>: Filter {
        let next: Next
        let asked: OperationLog
        var capabilities: Capabilities {
            var caps = next.capabilities
            caps.canExtents = true
            return caps
        }

        func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
            asked.append(LoggedOperation(connection: 0, command: .blockStatus, offset: offset, count: count, flags: flags))
            var result: [Extent] = []
            var position = offset
            while position < offset + count {
                let end = min(offset + count, (position / 65536 + 1) * 65536)
                result.append((position / 65536) % 2 == 0 ? .data(end - position) : .hole(end - position))
                position = end
            }
            return result
        }
    }

    func testRequestsInsideTheLastAnswerAreServedFromItUntilAWrite() async throws {
        let asked = OperationLog()
        let below = StripedExtents(next: TestMemoryBackend(size: 1 << 20), asked: asked)
        let layer = try CacheExtentsLayer(parameters: [:])
        let first = try await layer.wrap(AnyBlockBackend(below), for: ConnectionInfo())
        let second = try await layer.wrap(AnyBlockBackend(below), for: ConnectionInfo())

        let value9 = try await first.extents(count: 1 << 20, at: 0, flags: [.requestOne]).count
        XCTAssertEqual(value9, 16)
        XCTAssertEqual(asked.all.count, 1)
        XCTAssertFalse(asked.all[0].flags.contains(.requestOne), "asks below for everything")
        // Another connection, inside the cached range: cut at its offset, not asked below.
        let cut = try await second.extents(count: 4096, at: 65536 + 100, flags: [.requestOne])
        XCTAssertEqual(cut.first, .hole(65536 - 100))
        XCTAssertEqual(asked.all.count, 1)

        try await second.zero(count: 512, at: 0, flags: [])
        _ = try await first.extents(count: 4096, at: 0, flags: [])
        XCTAssertEqual(asked.all.count, 2, "a zero forgets the cached answer")
        let data = [UInt8](repeating: 1, count: 16)
        try await first.writeBytes(data, at: 0, flags: [])
        _ = try await first.extents(count: 4096, at: 8192, flags: [])
        XCTAssertEqual(asked.all.count, 3, "a write forgets the cached answer")
        try await first.trim(count: 512, at: 0, flags: [])
        _ = try await first.extents(count: 4096, at: 8192, flags: [])
        XCTAssertEqual(asked.all.count, 4, "a trim forgets the cached answer")
        // Outside the cached range (0..<4096 + 8192 was cached last): asked again.
        _ = try await first.extents(count: 4096, at: 1 << 19, flags: [])
        XCTAssertEqual(asked.all.count, 5)
    }

    func testHelpSaysItIsDeprecated() {
        XCTAssertTrue(CacheExtentsLayer.summary.contains("deprecated"))
    }
}

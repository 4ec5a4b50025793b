import NBDCore
import NBDFlowFilters
import NBDTestSupport
import Synchronization
import XCTest

/// The spinning filter: seek times by distance, heads, and the advertised properties.
final class SpinningFilterTests: XCTestCase {
    private func makeFilter(heads: Int = 1, separate: Bool = false) throws -> (
        SpinningFilter<TestMemoryBackend>, Waits
    ) {
        let waits = Waits()
        let recorder: @Sendable (Duration) async throws(NBDError) -> Void = { duration in
            waits.list.withLock { $0.append(duration) }
        }
        let filter = SpinningFilter(
            wrapping: TestMemoryBackend(size: 64 << 20), heads: heads, separate: separate, curve: try SeekCurve(),
            sleep: recorder)
        return (filter, waits)
    }

    func testTheSeekCurvePassesThroughItsThreePoints() throws {
        let curve = try SeekCurve()
        let range: UInt64 = 1 << 30
        XCTAssertEqual(curve.seekTime(distance: SeekCurve.trackSize, range: range), .zero)
        XCTAssertEqual(curve.seekTime(distance: range / 2, range: range), .milliseconds(200))
        XCTAssertEqual(curve.seekTime(distance: range, range: range), .milliseconds(500))
        let near = curve.seekTime(distance: SeekCurve.trackSize + 1, range: range)
        XCTAssertTrue(near >= .milliseconds(10) && near < .milliseconds(11), "\(near)")
    }

    func testFarRequestsWaitAndNearOnesDoNot() async throws {
        let (filter, waits) = try makeFilter()
        XCTAssertTrue(filter.capabilities.isRotational)
        XCTAssertFalse(filter.capabilities.canMultiConn)
        _ = try await filter.readBytes(4096, at: 4096)
        XCTAssertEqual(waits.list.withLock { $0 }, [], "within a track of the start")
        _ = try await filter.readBytes(4096, at: 32 << 20)
        try await filter.writeBytes([1], at: 64 << 20 - 1)
        try await filter.zero(count: 512, at: 0, flags: [])
        try await filter.trim(count: 512, at: 32 << 20, flags: [])
        let recorded = waits.list.withLock { $0 }
        XCTAssertEqual(recorded.count, 3, "read, write and zero seek; trim does not: \(recorded)")
        XCTAssertTrue(recorded[0] > .milliseconds(199) && recorded[0] < .milliseconds(201), "\(recorded)")
        XCTAssertTrue(recorded[2] > .milliseconds(499), "\(recorded)")
    }

    func testHeadsOnOneArmMoveTogetherAndSeparateHeadsDoNot() async throws {
        let (together, _) = try makeFilter(heads: 4)
        _ = try await together.readBytes(512, at: (16 << 20) + 4096)
        XCTAssertEqual(together.heads.positions, [4096, (16 << 20) + 4096, (32 << 20) + 4096, (48 << 20) + 4096])
        let (apart, waits) = try makeFilter(heads: 4, separate: true)
        _ = try await apart.readBytes(512, at: (16 << 20) + 4096)
        XCTAssertEqual(apart.heads.positions, [0, (16 << 20) + 4096, 32 << 20, 48 << 20])
        _ = try await apart.readBytes(512, at: (48 << 20) + (8 << 20))
        XCTAssertEqual(waits.list.withLock { $0 }.count, 1, "the fourth head moved half its range")
    }

    func testParametersAreRefusedNamingThem() {
        for (key, value, expected) in [
            ("heads", "0", "from 1 to 64"), ("heads", "65", "from 1 to 64"), ("separate-heads", "maybe", "boolean"),
            ("min-seek-time", "fast", "duration"),
        ] {
            XCTAssertThrowsError(try SpinningLayer(parameters: [key: value])) { error in
                XCTAssertTrue("\(error)".contains("\(key)=\(value)") && "\(error)".contains(expected), "\(error)")
            }
        }
        XCTAssertNoThrow(try SpinningLayer(parameters: ["half-seek-time": "500ms", "max-seek-time": "1000ms"]))
    }
}

/// The seek waits a filter asked for.
private final class Waits: Sendable {
    let list = Mutex<[Duration]>([])
}

import NBDCore
import NBDFlowFilters
import NBDTestSupport
import XCTest

/// The delay filter, with a sleep that records instead of waiting: delays are checked as counts and
/// requested durations, never by measuring time.
final class DelayFilterTests: XCTestCase {
    func makeStack(_ delays: Delays) -> (DelayFilter<RecordingFilter<TestMemoryBackend>>, ManualClock, OperationLog) {
        let clock = ManualClock()
        let log = OperationLog()
        let filter = DelayFilter(
            wrapping: RecordingFilter(wrapping: TestMemoryBackend(size: 1 << 20), log: log, connection: 1),
            delays: delays,
            sleep: { duration in clock.sleep(duration) })
        return (filter, clock, log)
    }

    func testEachOperationWaitsItsOwnDelayAndZeroDelaysDoNotSleep() async throws {
        let delays = Delays(read: .milliseconds(100), zero: .seconds(2), extents: .microseconds(5))
        let (filter, clock, log) = makeStack(delays)
        try await read(filter)
        try await filter.writeBytes([1], at: 0)
        try await filter.zero(count: 512, at: 0, flags: [])
        try await filter.trim(count: 512, at: 0, flags: [])
        try await filter.cache(count: 512, at: 0, flags: [])
        _ = try await filter.extents(count: 512, at: 0, flags: [])
        XCTAssertEqual(clock.sleeps, [.milliseconds(100), .seconds(2), .microseconds(5)])
        XCTAssertEqual(log.all.count, 6, "every request still reaches the layer below")
        XCTAssertEqual(filter.capabilities.slowOperations, [.read, .zero, .extents])
    }

    func testFastZeroFailsAtOnceWhenDelayFastZeroIsFalse() async throws {
        let (filter, clock, log) = makeStack(Delays(zero: .seconds(1), delaysFastZero: false))
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.zero(count: 512, at: 0, flags: .fastZero) },
            code: .notSupported)
        XCTAssertEqual(clock.sleeps, [])
        XCTAssertEqual(log.all.count, 0)
        try await filter.zero(count: 512, at: 0, flags: [])
        XCTAssertEqual(clock.sleeps, [.seconds(1)])
    }

    func testCloseWaitsDelayClose() async throws {
        let (filter, clock, _) = makeStack(Delays(close: .milliseconds(30)))
        await filter.close()
        XCTAssertEqual(clock.sleeps, [.milliseconds(30)])
    }

    func testParametersFollowNbdkitIncludingOldNamesAndOrder() throws {
        let delays = try Delays(parameters: [
            "rdelay": "1.5", "wdelay": "100ms", "delay-zero": "2us", "delay-open": "3", "delay-cache": "1.2μs",
            "delay-fast-zero": "false",
        ])
        XCTAssertEqual(delays.read, .milliseconds(1500))
        XCTAssertEqual(delays.write, .milliseconds(100))
        XCTAssertEqual(delays.trim, .milliseconds(100))
        XCTAssertEqual(delays.zero, .microseconds(2), "a later delay-zero overrides wdelay")
        XCTAssertEqual(delays.open, .seconds(3))
        XCTAssertEqual(delays.cache, .nanoseconds(1200))
        XCTAssertFalse(delays.delaysFastZero)
        XCTAssertThrowsError(try DelayLayer(parameters: ["delay-read": "soon"])) { error in
            XCTAssertTrue("\(error)".contains("delay-read=soon"), "\(error)")
        }
    }

    func testACancelledDelayFailsWithESHUTDOWNInsteadOfWaiting() async throws {
        // The real sleep: an hour-long delay ends as soon as its task is cancelled, which only a
        // suspended wait (not a blocked thread) allows.
        let filter = DelayFilter(wrapping: TestMemoryBackend(size: 1 << 20), delays: Delays(read: .seconds(3600)))
        let request = Task { try await read(filter) }
        request.cancel()
        let result = try await withBoundedWait("the cancelled delay to end") { await request.result }
        switch result {
        case .success: XCTFail("the cancelled delay let the read through")
        case .failure(let error): XCTAssertEqual((error as? NBDError)?.code, .shutdown, "\(error)")
        }
    }
}

import NBDCore
import NBDFlowFilters
import NBDTestSupport
import XCTest

/// The rate filter's token buckets on a manual clock: what a request waits for is checked as the
/// sleeps it asks for, never by measuring time.
final class RateFilterTests: XCTestCase {
    func testBucketStartsFullRefillsAtTheRateAndOwesTheRest() {
        var bucket = TokenBucket(rate: 8000, burstiness: 2, now: .seconds(10))
        XCTAssertEqual(bucket.capacity, 16000)
        XCTAssertEqual(bucket.take(16000, now: .seconds(10)).owed, 0)
        let (owed, wait) = bucket.take(4000, now: .seconds(10))
        XCTAssertEqual(owed, 4000)
        XCTAssertEqual(wait, .milliseconds(500))
        XCTAssertEqual(bucket.take(4000, now: .milliseconds(10_500)).owed, 0, "half a second earned 4000 bits")
        XCTAssertEqual(bucket.take(1, now: .seconds(1000)).owed, 0)
        XCTAssertEqual(bucket.level, 15999, "the bucket never holds more than its capacity")
        var unlimited = TokenBucket(rate: 0, now: .zero)
        XCTAssertEqual(unlimited.take(.max, now: .zero).owed, 0)
    }

    func testSharedLimiterHoldsEveryConnectionToOneRatePerDirection() async throws {
        let clock = ManualClock()
        // 8000 bits/s = 1000 bytes/s, bursting 2 s = 2000 bytes.
        let shared = RateLimiter(
            bitsPerSecond: 8000, burstiness: 2, rateFile: nil, now: { clock.now }, sleep: { clock.sleep($0) })
        let backend = TestMemoryBackend(size: 1 << 20)
        let one = RateFilter(wrapping: backend, shared: shared, connection: nil)
        let two = RateFilter(wrapping: backend, shared: shared, connection: nil)
        try await read(one, count: 1000)
        try await read(two, count: 1000)
        XCTAssertEqual(clock.sleeps, [], "the first two seconds' worth is the burst")
        try await read(one, count: 1000)
        XCTAssertEqual(clock.sleeps, [.seconds(1)], "the third 1000 bytes wait a second, whichever connection")
        try await one.writeBytes([UInt8](repeating: 0, count: 1000), at: 0)
        XCTAssertEqual(clock.sleeps.count, 1, "writes have a bucket of their own")
        try await one.zero(count: 1 << 20, at: 0, flags: [])
        try await one.trim(count: 1 << 20, at: 0, flags: [])
        XCTAssertEqual(clock.sleeps.count, 1, "zero and trim carry no data and pass at once")
    }

    func testPerConnectionLimitersAreIndependent() async throws {
        let clock = ManualClock()
        func limiter() -> RateLimiter {
            RateLimiter(
                bitsPerSecond: 8000, burstiness: 1, rateFile: nil, now: { clock.now }, sleep: { clock.sleep($0) })
        }
        let backend = TestMemoryBackend(size: 1 << 20)
        let one = RateFilter(wrapping: backend, shared: nil, connection: limiter())
        let two = RateFilter(wrapping: backend, shared: nil, connection: limiter())
        try await read(one, count: 1000)
        try await read(two, count: 1000)
        XCTAssertEqual(clock.sleeps, [])
        try await read(one, count: 500)
        XCTAssertEqual(clock.sleeps, [.milliseconds(500)])
    }

    func testWithoutLimitsNothingIsSlowAndNothingWaits() async throws {
        let filter = RateFilter(wrapping: TestMemoryBackend(size: 1 << 20), shared: nil, connection: nil)
        XCTAssertEqual(filter.capabilities.slowOperations, [])
        try await read(filter, count: 65536)
        let limited = RateFilter(
            wrapping: TestMemoryBackend(size: 1 << 20), shared: RateLimiter(bitsPerSecond: 1 << 30), connection: nil)
        XCTAssertEqual(limited.capabilities.slowOperations, [.read, .write])
    }

    func testRateFileAdjustsTheRate() async throws {
        let clock = ManualClock()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rate-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "16K\n".write(toFile: path, atomically: true, encoding: .utf8)
        let limiter = RateLimiter(
            bitsPerSecond: 8000, burstiness: 2, rateFile: path, now: { clock.now }, sleep: { clock.sleep($0) })
        try await limiter.pass(bytes: 1, .read)
        XCTAssertEqual(limiter.bitsPerSecond, 16384)
        try "not a rate".write(toFile: path, atomically: true, encoding: .utf8)
        clock.advance(by: .seconds(2))
        try await limiter.pass(bytes: 1, .read)
        XCTAssertEqual(limiter.bitsPerSecond, 16384, "a file that is not a size leaves the rate alone")
    }

    func testParametersAreNbdkitsAndRefuseZero() throws {
        let layer = try RateLayer(parameters: ["rate": "1M", "connection-rate": "50K", "burstiness": "4"])
        XCTAssertEqual(layer.shared?.bitsPerSecond, 1 << 20)
        XCTAssertEqual(layer.connectionRate, 50 << 10)
        XCTAssertEqual(layer.burstiness, 4)
        XCTAssertNil(try RateLayer(parameters: [:]).shared)
        for (key, value) in [("rate", "0"), ("connection-rate", "0"), ("burstiness", "-1"), ("rate", "fast")] {
            XCTAssertThrowsError(try RateLayer(parameters: [key: value])) { error in
                XCTAssertTrue("\(error)".contains("\(key)=\(value)"), "\(error)")
            }
        }
    }
}

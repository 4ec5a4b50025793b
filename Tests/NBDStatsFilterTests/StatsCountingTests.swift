import Foundation
import NBDCore
import NBDStatsFilter
import NBDTestSupport
import XCTest

/// What the collector counts: operations, bytes, time, size and alignment histograms, failures.
final class StatsCountingTests: XCTestCase {
    func testFixedWorkloadCountsOperationsBytesAndTime() async throws {
        let time = SteppingClock(step: 1_000)
        let stats = StatsCollector(clock: time.clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.write(count: 4096, at: 0)
        try await filter.write(count: 4096, at: 8192)
        _ = try await filter.readBytes(512, at: 1024)
        try await filter.zero(count: 65536, at: 65536, flags: [])
        try await filter.trim(count: 8192, at: 0, flags: [])
        try await filter.cache(count: 1 << 20, at: 0, flags: [])
        _ = try await filter.extents(count: 2 << 20, at: 0, flags: [])
        try await filter.flush(flags: [])

        let snapshot = stats.snapshot()
        XCTAssertEqual(snapshot[.write].count, 2)
        XCTAssertEqual(snapshot[.write].bytes, 8192)
        XCTAssertEqual(snapshot[.read].count, 1)
        XCTAssertEqual(snapshot[.read].bytes, 512)
        XCTAssertEqual(snapshot[.zero].bytes, 65536)
        XCTAssertEqual(snapshot[.trim].bytes, 8192)
        XCTAssertEqual(snapshot[.cache].bytes, 1 << 20)
        XCTAssertEqual(snapshot[.extents].bytes, 2 << 20, "extents count the requested range")
        XCTAssertEqual(snapshot[.flush].count, 1)
        XCTAssertEqual(snapshot[.flush].bytes, 0)
        // Every request took exactly one clock step.
        for operation in StatsOperation.allCases {
            let stats = snapshot[operation]
            XCTAssertEqual(stats.nanoseconds, stats.count * 1_000, "\(operation)")
        }
        // Cache is left out of the total operations; only read/write/trim/zero bytes are totalled.
        XCTAssertEqual(snapshot.totalOperations, 7)
        XCTAssertEqual(snapshot.totalBytes, 8192 + 512 + 65536 + 8192)
        // The collector started at the first reading and the snapshot is the 18th.
        XCTAssertEqual(snapshot.elapsedNanoseconds, 17_000)
    }

    func testSizeAndAlignmentHistograms() async throws {
        let stats = StatsCollector(clock: SteppingClock().clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.referenceWrites()
        try await filter.write(count: 6000, at: 3)  // 6000 bytes: floor(log2) = 12, offset 3: 0 bits

        let write = stats.snapshot()[.write]
        XCTAssertEqual(write.sizeBuckets.map(\.sizeBits), [9, 12, 16])
        let small = try XCTUnwrap(write.bucket(sizeBits: 9))
        XCTAssertEqual(small.requests, 1)
        XCTAssertEqual(small.bytes, 512)
        XCTAssertEqual(small.exactAlignment[9], 1)

        let pages = try XCTUnwrap(write.bucket(sizeBits: 12))
        XCTAssertEqual(pages.requests, 21)
        XCTAssertEqual(pages.bytes, 20 * 4096 + 6000)
        XCTAssertEqual(pages.offsetZeroRequests, 1)
        XCTAssertEqual(pages.exactAlignment[0], 1)
        XCTAssertEqual(pages.exactAlignment[12], 10)
        XCTAssertEqual(pages.requests(alignedTo: 0), 21)
        XCTAssertEqual(pages.requests(alignedTo: 12), 20, "offset 0 counts as aligned at every level")
        XCTAssertEqual(pages.requests(alignedTo: 16), 2)
        XCTAssertEqual(pages.requests(alignedTo: 63), 1)

        let large = try XCTUnwrap(write.bucket(sizeBits: 16))
        XCTAssertEqual(large.requests, 3)
        XCTAssertEqual(large.exactAlignment[20], 2)
        XCTAssertEqual(large.exactAlignment[21], 1)
    }

    func testThresholdZeroCollectsNoHistograms() async throws {
        let stats = StatsCollector(threshold: 0, clock: SteppingClock().clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.referenceWrites()
        let write = stats.snapshot()[.write]
        XCTAssertEqual(write.count, 24)
        XCTAssertEqual(write.sizeBuckets, [])
    }

    func testFailuresAreCountedApartWithTheirCodes() async throws {
        let stats = StatsCollector(clock: SteppingClock().clock)
        let (filter, backend) = makeStatsStack(stats)
        backend.failNext(.write, with: NBDError(.ioError, "bad sector"))
        backend.failNext(.write, with: NBDError(.noSpace, "full"))
        backend.failNext(.flush, with: NBDError(.ioError, "lost"))
        backend.failNext(.blockStatus, with: NBDError(.init(wireValue: 999, name: "EWEIRD"), "custom"))
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await filter.write(count: 512, at: 0) }, code: .ioError)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await filter.write(count: 512, at: 0) }, code: .noSpace)
        try await filter.write(count: 512, at: 0)
        await XCTAssertThrowsNBDError({ () throws(NBDError) in try await filter.flush(flags: []) }, code: .ioError)
        _ = try? await filter.extents(count: 512, at: 0, flags: [])

        let snapshot = stats.snapshot()
        XCTAssertEqual(snapshot[.write].count, 1, "only successes are counted as operations, as in nbdkit")
        XCTAssertEqual(snapshot[.write].bytes, 512)
        XCTAssertEqual(snapshot[.write].bucket(sizeBits: 9)?.requests, 1)
        XCTAssertEqual(snapshot[.write].failures, 2)
        XCTAssertEqual(
            snapshot[.write].failureCodes,
            [FailureCount(name: "EIO", count: 1), FailureCount(name: "ENOSPC", count: 1)])
        XCTAssertEqual(snapshot[.flush].count, 0)
        XCTAssertEqual(snapshot[.flush].failureCodes, [FailureCount(name: "EIO", count: 1)])
        XCTAssertEqual(snapshot[.extents].failureCodes, [FailureCount(name: "other", count: 1)])
        XCTAssertEqual(snapshot.totalFailures, 4)
    }

    func testClosedConnectionsAreRetained() async throws {
        let stats = StatsCollector(clock: SteppingClock().clock)
        let (first, _) = makeStatsStack(stats)
        let (second, _) = makeStatsStack(stats)
        XCTAssertEqual(stats.openConnections, 2)
        try await first.write(count: 4096, at: 0)
        try await second.write(count: 4096, at: 4096)
        await first.close()
        await first.close()  // a second close must not count the connection twice
        XCTAssertEqual(stats.openConnections, 1)
        try await second.write(count: 512, at: 0)
        let snapshot = stats.snapshot()
        XCTAssertEqual(snapshot[.write].count, 3)
        XCTAssertEqual(snapshot[.write].bucket(sizeBits: 12)?.requests, 2)
        await second.close()
        XCTAssertEqual(stats.snapshot()[.write].count, 3)
        XCTAssertEqual(stats.openConnections, 0)
    }

    func testCapabilitiesAndDataPassThrough() async throws {
        let stats = StatsCollector()
        let (filter, backend) = makeStatsStack(stats)
        XCTAssertEqual(filter.capabilities, backend.capabilities)
        try await filter.writeString("hello", at: 100)
        let text = try await filter.readString(5, at: 100)
        XCTAssertEqual(text, "hello")
    }

    func testLatencyPercentilesOfFixedDurationRequests() async throws {
        let time = SteppingClock(step: 5_000)
        let stats = StatsCollector(clock: time.clock)
        let (filter, _) = makeStatsStack(stats)
        for i in 0..<10 { try await filter.write(count: 512, at: UInt64(i) * 512) }
        let latency = stats.snapshot()[.write].latency
        XCTAssertEqual(latency.count, 10)
        XCTAssertEqual(latency.maximum, 5_000)
        XCTAssertEqual(latency.p50, 5_000)
        XCTAssertEqual(latency.p99, 5_000)
    }

    // MARK: Concurrency

    func testManyConnectionsFromManyTasksLoseNoCounts() async throws {
        let stats = StatsCollector()
        let connections = 16
        let requestsPerConnection = 2_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<connections {
                group.addTask {
                    let (filter, _) = makeStatsStack(stats, size: 1 << 20)
                    for i in 0..<requestsPerConnection {
                        let offset = UInt64((c * 7 + i) % 2048) * 512
                        try await filter.write(count: 512, at: offset)
                        try await filter.flush(flags: [])
                    }
                    // Half the connections close, so their counts move to the retained total while
                    // the others are still counting.
                    if c % 2 == 0 { await filter.close() }
                }
            }
            // Snapshots taken while requests run must see counts only grow.
            group.addTask {
                var last: UInt64 = 0
                for _ in 0..<200 {
                    let now = stats.snapshot()[.write].count
                    XCTAssertGreaterThanOrEqual(now, last)
                    last = now
                    await Task.yield()
                }
            }
            try await group.waitForAll()
        }
        let snapshot = stats.snapshot()
        let expected = UInt64(connections * requestsPerConnection)
        XCTAssertEqual(snapshot[.write].count, expected)
        XCTAssertEqual(snapshot[.write].bytes, expected * 512)
        XCTAssertEqual(snapshot[.write].bucket(sizeBits: 9)?.requests, expected)
        XCTAssertEqual(snapshot[.write].latency.count, expected)
        XCTAssertEqual(snapshot[.flush].count, expected)
        XCTAssertEqual(stats.openConnections, connections / 2)
    }

    func testConcurrentRequestsOnOneConnectionLoseNoCounts() async throws {
        let stats = StatsCollector()
        let (filter, _) = makeStatsStack(stats, size: 1 << 20)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<8 {
                group.addTask {
                    for i in 0..<1_000 {
                        _ = try await filter.readBytes(4096, at: UInt64((t + i) % 256) * 4096)
                    }
                }
            }
            try await group.waitForAll()
        }
        let read = stats.snapshot()[.read]
        XCTAssertEqual(read.count, 8_000)
        XCTAssertEqual(read.bucket(sizeBits: 12)?.requests, 8_000)
        XCTAssertEqual(read.bytes, 8_000 * 4096)
    }
}

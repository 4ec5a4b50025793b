import Foundation
import NBDCore
import NBDTestSupport
import XCTest

@testable import NBDStatsFilter

/// The text report, line for line in nbdkit's format, and the two nbdkit bugs it fixes.
final class StatsReportTests: XCTestCase {
    /// Reference section 4's first example: write 4 KiB at 0, flush, read 4 KiB at 0. Each request
    /// takes 1 µs on the injected clock and the report is taken 7 µs after the start.
    func testReportOfTheReferenceExampleMatchesNbdkitsFormat() async throws {
        let stats = StatsCollector(clock: SteppingClock(step: 1_000).clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.write(count: 4096, at: 0)
        try await filter.flush(flags: [])
        _ = try await filter.readBytes(4096, at: 0)
        XCTAssertEqual(
            stats.report(),
            """
            total: 3 ops, 0.000007 s, 8.00 KiB, 1.09 GiB/s
            read: 1 ops, 0.000001 s, 4.00 KiB, 3.81 GiB/s op, 558.04 MiB/s total
              Request size and alignment breakdown:
                other sizes: 100.0% (1 reqs, 4.00 KiB total)

            write: 1 ops, 0.000001 s, 4.00 KiB, 3.81 GiB/s op, 558.04 MiB/s total
              Request size and alignment breakdown:
                other sizes: 100.0% (1 reqs, 4.00 KiB total)

            flush: 1 ops, 0.000001 s, 0 bytes, 0 bytes/s op, 0 bytes/s total

            """)
    }

    /// With the real clock the numbers vary; the shape must still be nbdkit's.
    func testReportShapeWithTheMonotonicClock() async throws {
        let stats = StatsCollector()
        let (filter, _) = makeStatsStack(stats)
        try await filter.write(count: 4096, at: 0)
        try await filter.flush(flags: [])
        _ = try await filter.readBytes(4096, at: 0)
        let lines = stats.report().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let number = #"\d+\.\d{6} s"#
        let size = #"(\d+ bytes|\d+\.\d\d (KiB|MiB|GiB))"#
        let rate = #"(\(n/a\)|\d+ bytes|\d+\.\d\d (KiB|MiB|GiB))"#
        let patterns = [
            "^total: 3 ops, \(number), 8.00 KiB, \(rate)/s$",
            "^read: 1 ops, \(number), 4.00 KiB, \(rate)/s op, \(rate)/s total$",
            "^  Request size and alignment breakdown:$",
            #"^    other sizes: 100.0% \(1 reqs, 4.00 KiB total\)$"#,
            "^$",
            "^write: 1 ops, \(number), 4.00 KiB, \(rate)/s op, \(rate)/s total$",
            "^  Request size and alignment breakdown:$",
            #"^    other sizes: 100.0% \(1 reqs, 4.00 KiB total\)$"#,
            "^$",
            "^flush: 1 ops, \(number), 0 bytes, \(rate)/s op, \(size)/s total$",
            "^$",
        ]
        XCTAssertEqual(lines.count, patterns.count, stats.report())
        for (line, pattern) in zip(lines, patterns) {
            XCTAssertNotNil(line.range(of: pattern, options: .regularExpression), "\(line) !~ \(pattern)")
        }
    }

    /// Reference section 4's larger run, write section: the same histogram lines as nbdkit, except the
    /// `other sizes` bytes, which nbdkit gets wrong (it prints 272.50 KiB, all the writes' bytes).
    func testWriteSectionOfTheReferenceWorkload() async throws {
        let stats = StatsCollector(clock: SteppingClock(step: 1_000).clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.referenceWrites()
        XCTAssertEqual(
            section(stats.report(), startingWith: "write:"),
            [
                "write: 24 ops, 0.000024 s, 272.50 KiB, 10.83 GiB/s op, 5.30 GiB/s total",
                "  Request size and alignment breakdown:",
                "    12 bits: 83.3% (20 reqs, 80.00 KiB total)",
                "         12 bit aligned: 100.0% (20)",
                "         13 bit aligned:  50.0% (10)",
                "         14 bit aligned:  25.0% (5)",
                "         15 bit aligned:  15.0% (3)",
                "         16 bit aligned:  10.0% (2)",
                "    16 bits: 12.5% (3 reqs, 192.00 KiB total)",
                "         20 bit aligned: 100.0% (3)",
                "         21 bit aligned:  33.3% (1)",
                "    other sizes:  4.2% (1 reqs, 512 bytes total)",
            ])
    }

    /// nbdkit inverts the buckets into a map keyed by request count, so two sizes with the same count
    /// collide and one disappears from its report. Both must be listed, smaller size first.
    func testSizeBucketsWithEqualRequestCountsAreAllListed() async throws {
        let stats = StatsCollector(clock: SteppingClock().clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.write(count: 65536, at: 1 << 20)
        try await filter.write(count: 65536, at: 2 << 20)
        try await filter.write(count: 4096, at: 4096)
        try await filter.write(count: 4096, at: 8192)
        XCTAssertEqual(
            Array(section(stats.report(), startingWith: "write:").dropFirst()),
            [
                "  Request size and alignment breakdown:",
                "    12 bits: 50.0% (2 reqs, 8.00 KiB total)",
                "         12 bit aligned: 100.0% (2)",
                "         13 bit aligned:  50.0% (1)",
                "    16 bits: 50.0% (2 reqs, 128.00 KiB total)",
                "         20 bit aligned: 100.0% (2)",
                "         21 bit aligned:  50.0% (1)",
            ])
    }

    /// nbdkit prints all of the operation's bytes after `other sizes`; the fix prints the bytes of the
    /// sizes that were not listed.
    func testOtherSizesShowsOnlyTheBytesOfTheOtherSizes() async throws {
        let stats = StatsCollector(clock: SteppingClock().clock)
        let (filter, _) = makeStatsStack(stats)
        for i in 0..<20 { try await filter.write(count: 4096, at: UInt64(i + 1) * 4096) }
        try await filter.write(count: 512, at: 512)
        try await filter.write(count: 1 << 20, at: 2 << 20)
        let lines = section(stats.report(), startingWith: "write:")
        XCTAssertEqual(lines.last, "    other sizes:  9.1% (2 reqs, 1.00 MiB total)")
        XCTAssertTrue(lines[0].contains("1.08 MiB"), "the operation line still has all the bytes: \(lines[0])")
    }

    /// Alignment levels holding fewer than (100 - threshold)% of a size's requests are summarised in one
    /// `N+ bit-aligned` line.
    func testAlignmentLevelsBelowTheCutoffAreSummarised() async throws {
        let stats = StatsCollector(clock: SteppingClock().clock)
        let (filter, _) = makeStatsStack(stats, size: 1 << 20)
        for i in 1...100 { try await filter.write(count: 512, at: UInt64(i) * 512) }
        XCTAssertEqual(
            Array(section(stats.report(), startingWith: "write:").dropFirst()),
            [
                "  Request size and alignment breakdown:",
                "     9 bits: 100.0% (100 reqs, 50.00 KiB total)",
                "          9 bit aligned: 100.0% (100)",
                "         10 bit aligned:  50.0% (50)",
                "         11 bit aligned:  25.0% (25)",
                "         12 bit aligned:  12.0% (12)",
                "         13 bit aligned:   6.0% (6)",
                "         14+ bit-aligned:  3.0% (3)",
            ])
    }

    func testThresholdZeroPrintsOnlyTheSummaryLines() async throws {
        let stats = StatsCollector(threshold: 0, clock: SteppingClock().clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.referenceWrites()
        try await filter.flush(flags: [])
        XCTAssertEqual(
            stats.report(),
            """
            total: 25 ops, 0.000051 s, 272.50 KiB, 5.10 GiB/s
            write: 24 ops, 0.000024 s, 272.50 KiB, 10.83 GiB/s op, 5.10 GiB/s total
            flush: 1 ops, 0.000001 s, 0 bytes, 0 bytes/s op, 0 bytes/s total

            """.replacingOccurrences(of: "\n\n", with: "\n"))
    }

    func testThresholdHundredListsEverySizeAndEveryAlignment() async throws {
        let stats = StatsCollector(threshold: 100, clock: SteppingClock().clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.referenceWrites()
        let lines = section(stats.report(), startingWith: "write:")
        XCTAssertTrue(lines.contains("     9 bits:  4.2% (1 reqs, 512 bytes total)"), lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains("          9 bit aligned: 100.0% (1)"))
        XCTAssertFalse(lines.contains { $0.contains("other sizes") })
    }

    func testRatesOverZeroTimeAreNotAvailable() async throws {
        let stats = StatsCollector(clock: SteppingClock(step: 0).clock)
        let (filter, _) = makeStatsStack(stats)
        try await filter.flush(flags: [])
        XCTAssertEqual(
            stats.report(),
            """
            total: 1 ops, 0.000000 s, 0 bytes, (n/a)/s
            flush: 1 ops, 0.000000 s, 0 bytes, (n/a)/s op, (n/a)/s total

            """.replacingOccurrences(of: "\n\n", with: "\n"))
    }

    func testFailuresFollowAsTheirOwnSection() async throws {
        let stats = StatsCollector(clock: SteppingClock().clock)
        let (filter, backend) = makeStatsStack(stats)
        backend.failNext(.write, with: NBDError(.ioError, "bad sector"))
        backend.failNext(.write, with: NBDError(.noSpace, "full"))
        backend.failNext(.flush, with: NBDError(.ioError, "lost"))
        _ = try? await filter.write(count: 512, at: 0)
        _ = try? await filter.write(count: 512, at: 0)
        _ = try? await filter.flush(flags: [])
        XCTAssertEqual(
            stats.report(),
            """
            total: 0 ops, 0.000004 s, 0 bytes, 0 bytes/s
            failed: 3 ops
              write: 2 (EIO 1, ENOSPC 1)
              flush: 1 (EIO 1)

            """.replacingOccurrences(of: "\n\n", with: "\n"))
    }

    func testHumanSizesAndRates() {
        XCTAssertEqual(humanSize(0), "0 bytes")
        XCTAssertEqual(humanSize(1023), "1023 bytes")
        XCTAssertEqual(humanSize(1024), "1.00 KiB")
        XCTAssertEqual(humanSize(279_040), "272.50 KiB")
        XCTAssertEqual(humanSize(1 << 20), "1.00 MiB")
        XCTAssertEqual(humanSize((1 << 30) - 1), "1024.00 MiB")
        XCTAssertEqual(humanSize(3 << 30), "3.00 GiB")
        XCTAssertEqual(humanSize(1 << 50), "1048576.00 GiB")
        XCTAssertEqual(humanRate(4096, microseconds: 0), "(n/a)")
        XCTAssertEqual(humanRate(4096, microseconds: 1), "3.81 GiB")
        XCTAssertEqual(humanRate(1000, microseconds: 3_000_000), "333 bytes", "truncated to whole bytes")
        XCTAssertEqual(cFormat("%4.1f", 4.1666), " 4.2")
        XCTAssertEqual(cFormat("%5.1f", 100), "100.0")
    }

    func testJSONOfAFixedWorkload() async throws {
        let stats = StatsCollector(clock: SteppingClock(step: 1_000).clock)
        let (filter, backend) = makeStatsStack(stats)
        try await filter.write(count: 4096, at: 0)
        try await filter.write(count: 4096, at: 12288)
        backend.failNext(.flush, with: NBDError(.ioError, "lost"))
        _ = try? await filter.flush(flags: [])
        let json = stats.json()
        let expected =
            #"{"elapsed_ns":6000,"threshold":95,"total":{"ops":2,"bytes":8192,"failures":1},"operations":{"#
            + #""read":{"ops":0,"bytes":0,"time_ns":0,"failures":{"total":0,"codes":{}},"latency_ns":{"p50":0,"p90":0,"p99":0,"max":0},"sizes":[]},"#
            + #""write":{"ops":2,"bytes":8192,"time_ns":2000,"failures":{"total":0,"codes":{}},"latency_ns":{"p50":1000,"p90":1000,"p99":1000,"max":1000},"#
            + #""sizes":[{"bits":12,"requests":2,"bytes":8192,"offset_zero":1,"aligned":[{"bits":12,"requests":2}]}]},"#
            + #""trim":{"ops":0,"bytes":0,"time_ns":0,"failures":{"total":0,"codes":{}},"latency_ns":{"p50":0,"p90":0,"p99":0,"max":0},"sizes":[]},"#
            + #""zero":{"ops":0,"bytes":0,"time_ns":0,"failures":{"total":0,"codes":{}},"latency_ns":{"p50":0,"p90":0,"p99":0,"max":0},"sizes":[]},"#
            + #""extents":{"ops":0,"bytes":0,"time_ns":0,"failures":{"total":0,"codes":{}},"latency_ns":{"p50":0,"p90":0,"p99":0,"max":0},"sizes":[]},"#
            + #""cache":{"ops":0,"bytes":0,"time_ns":0,"failures":{"total":0,"codes":{}},"latency_ns":{"p50":0,"p90":0,"p99":0,"max":0},"sizes":[]},"#
            + #""flush":{"ops":0,"bytes":0,"time_ns":0,"failures":{"total":1,"codes":{"EIO":1}},"latency_ns":{"p50":0,"p90":0,"p99":0,"max":0},"sizes":[]}}}"#
        XCTAssertEqual(json, expected)
        // It must also parse as JSON.
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        XCTAssertEqual((object?["total"] as? [String: Any])?["ops"] as? Int, 2)
    }
}

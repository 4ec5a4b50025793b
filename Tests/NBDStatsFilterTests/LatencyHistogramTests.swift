import XCTest

@testable import NBDStatsFilter

final class LatencyHistogramTests: XCTestCase {
    func testBucketsAreMonotonicAndBoundTheirValues() {
        var previous = 0
        var value: UInt64 = 0
        while value < (1 << 41) {
            let bucket = LatencyHistogram.bucket(for: value)
            XCTAssertGreaterThanOrEqual(bucket, previous)
            XCTAssertLessThan(bucket, LatencyHistogram.bucketCount)
            XCTAssertLessThanOrEqual(value, LatencyHistogram.upperBound(of: bucket))
            if bucket > 0 && bucket < LatencyHistogram.bucketCount - 1 {
                XCTAssertGreaterThan(value, LatencyHistogram.upperBound(of: bucket - 1))
                // Log-linear: a bucket is at most 1/8 of its lower bound wide.
                let lower = LatencyHistogram.upperBound(of: bucket - 1) + 1
                XCTAssertLessThanOrEqual(LatencyHistogram.upperBound(of: bucket) - lower + 1, max(1, lower / 8))
            }
            previous = bucket
            value = value < 64 ? value + 1 : value + value / 7 + 1
        }
        XCTAssertEqual(LatencyHistogram.bucket(for: 1 << 39), LatencyHistogram.bucketCount - 8)
        XCTAssertEqual(LatencyHistogram.bucket(for: (1 << 40) - 1), LatencyHistogram.bucketCount - 1)
        XCTAssertEqual(LatencyHistogram.bucket(for: 1 << 40), LatencyHistogram.bucketCount - 1)
        XCTAssertEqual(LatencyHistogram.bucket(for: .max), LatencyHistogram.bucketCount - 1)
    }

    func testPercentilesUseNearestRankAndBucketUpperBounds() {
        var histogram = LatencyHistogram()
        // 1 µs ... 100 µs, one request each.
        for micro in 1...100 {
            let ns = UInt64(micro) * 1_000
            histogram.counts[LatencyHistogram.bucket(for: ns)] += 1
            histogram.maximum = max(histogram.maximum, ns)
        }
        XCTAssertEqual(histogram.count, 100)
        for (fraction, exact) in [(0.5, 50_000.0), (0.9, 90_000.0), (0.99, 99_000.0)] {
            let value = Double(histogram.percentile(fraction))
            XCTAssertGreaterThanOrEqual(value, exact)
            XCTAssertLessThanOrEqual(value, exact * 1.125, "within one bucket of p\(Int(fraction * 100))")
        }
        XCTAssertEqual(histogram.percentile(1.0), 100_000, "capped at the exact maximum")
        XCTAssertEqual(LatencyHistogram().p99, 0)
    }

    func testMergeAddsCountsAndKeepsTheLargerMaximum() {
        var a = LatencyHistogram()
        a.counts[3] = 2
        a.maximum = 3
        var b = LatencyHistogram()
        b.counts[3] = 1
        b.counts[20] = 4
        b.maximum = 40
        a.merge(b)
        XCTAssertEqual(a.counts[3], 3)
        XCTAssertEqual(a.counts[20], 4)
        XCTAssertEqual(a.maximum, 40)
    }
}

/// Request latencies in a fixed-size log-linear histogram: exact below 8 ns, then eight equal buckets
/// per power of two, up to 2^40 ns (about 18 minutes; longer requests land in the last bucket).
///
/// The fixed size lets each connection keep its counters in a flat block of atomics that is allocated
/// once, and makes merging connections a plain sum. A reported percentile is the upper bound of the
/// bucket it falls in (capped at the exact ``maximum``), so it overstates by less than 12.5%.
public struct LatencyHistogram: Sendable, Hashable {
    /// How many buckets the histogram has.
    public static let bucketCount = 304

    /// How many requests fell in each bucket.
    public internal(set) var counts: [UInt64]
    /// The longest request seen, exactly, in nanoseconds.
    public internal(set) var maximum: UInt64

    /// An empty histogram.
    public init() {
        counts = [UInt64](repeating: 0, count: Self.bucketCount)
        maximum = 0
    }

    /// The number of requests recorded.
    public var count: UInt64 { counts.reduce(0, &+) }

    /// The bucket that holds `nanoseconds`.
    @inlinable
    public static func bucket(for nanoseconds: UInt64) -> Int {
        if nanoseconds < 8 { return Int(nanoseconds) }
        let exponent = 63 - nanoseconds.leadingZeroBitCount
        if exponent >= 40 { return bucketCount - 1 }
        let sub = Int((nanoseconds >> UInt64(exponent - 3)) & 7)
        return (exponent - 2) * 8 + sub
    }

    /// The largest value that falls in `bucket`.
    public static func upperBound(of bucket: Int) -> UInt64 {
        if bucket < 8 { return UInt64(bucket) }
        if bucket >= bucketCount - 1 { return UInt64.max }
        let exponent = bucket / 8 + 2
        let sub = UInt64(bucket % 8)
        let width = UInt64(1) << UInt64(exponent - 3)
        return (8 + sub + 1) * width - 1
    }

    /// The latency that `fraction` (0...1) of requests did not exceed, in nanoseconds; 0 when empty.
    /// Uses the nearest-rank definition.
    public func percentile(_ fraction: Double) -> UInt64 {
        let total = count
        guard total > 0 else { return 0 }
        let rank = max(1, UInt64((fraction * Double(total)).rounded(.up)))
        var seen: UInt64 = 0
        for (bucket, n) in counts.enumerated() where n > 0 {
            seen += n
            if seen >= rank { return min(Self.upperBound(of: bucket), maximum) }
        }
        return maximum
    }

    /// The median latency in nanoseconds.
    public var p50: UInt64 { percentile(0.50) }
    /// The 90th percentile latency in nanoseconds.
    public var p90: UInt64 { percentile(0.90) }
    /// The 99th percentile latency in nanoseconds.
    public var p99: UInt64 { percentile(0.99) }

    /// Adds `other`'s requests to this histogram.
    public mutating func merge(_ other: LatencyHistogram) {
        for i in 0..<Self.bucketCount { counts[i] &+= other.counts[i] }
        maximum = max(maximum, other.maximum)
    }
}

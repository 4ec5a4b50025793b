import NBDCore
import Synchronization

/// Failed requests of one operation with one error code.
public struct FailureCount: Sendable, Hashable {
    /// The code's symbolic name (`EIO`, `ENOSPC`, ...), or `other` for codes outside the NBD
    /// protocol's eight.
    public var name: String
    /// How many requests failed with it.
    public var count: UInt64

    /// Creates a count of `count` failures with the code named `name`.
    public init(name: String, count: UInt64) {
        self.name = name
        self.count = count
    }

    /// The eight NBD wire errors, in the order counters keep them; slot 8 is `other`.
    static let codes: [NBDError.Code] = [
        .notPermitted, .ioError, .outOfMemory, .invalidArgument, .noSpace, .overflow, .notSupported, .shutdown,
    ]

    static func slot(for code: NBDError.Code) -> Int {
        switch code.wireValue {
        case 1: 0
        case 5: 1
        case 12: 2
        case 22: 3
        case 28: 4
        case 75: 5
        case 95: 6
        case 108: 7
        default: 8
        }
    }

    static func name(ofSlot slot: Int) -> String { slot < codes.count ? codes[slot].name : "other" }
}

/// Requests of one operation whose size falls in one power-of-two bucket, with their alignment.
public struct RequestSizeBucket: Sendable, Hashable {
    /// floor(log2(request size)): the bucket holds sizes 2^sizeBits ..< 2^(sizeBits+1).
    public var sizeBits: Int
    /// The bytes of all requests in the bucket.
    public var bytes: UInt64
    /// Requests at offset 0, which count as aligned at every level.
    public var offsetZeroRequests: UInt64
    /// `exactAlignment[k]`: requests whose offset has exactly `k` trailing zero bits (64 entries).
    public var exactAlignment: [UInt64]

    /// Creates an empty bucket for sizes 2^sizeBits ..< 2^(sizeBits+1).
    public init(sizeBits: Int) {
        self.sizeBits = sizeBits
        self.bytes = 0
        self.offsetZeroRequests = 0
        self.exactAlignment = [UInt64](repeating: 0, count: 64)
    }

    /// The number of requests in the bucket.
    public var requests: UInt64 { exactAlignment.reduce(offsetZeroRequests, &+) }

    /// Requests whose offset is a multiple of 2^bits (offset 0 included): the cumulative count the
    /// report's `N bit aligned` lines show.
    public func requests(alignedTo bits: Int) -> UInt64 {
        exactAlignment[min(bits, 64)...].reduce(offsetZeroRequests, &+)
    }

    mutating func merge(_ other: RequestSizeBucket) {
        bytes &+= other.bytes
        offsetZeroRequests &+= other.offsetZeroRequests
        for k in 0..<64 { exactAlignment[k] &+= other.exactAlignment[k] }
    }
}

/// The counts of one operation, summed over every connection.
public struct OperationStats: Sendable, Hashable {
    /// Which operation.
    public var operation: StatsOperation
    /// Successful requests. Failed ones are only in ``failures``, as nbdkit counts only successes.
    public var count: UInt64
    /// Bytes of successful requests: the request length (0 for flush, the requested range for extents).
    public var bytes: UInt64
    /// Time spent in the layers below on successful requests, in nanoseconds.
    public var nanoseconds: UInt64
    /// Size buckets that saw requests, by ascending size. Empty with `statsthreshold=0`.
    public var sizeBuckets: [RequestSizeBucket]
    /// Latencies of successful requests.
    public var latency: LatencyHistogram
    /// Failed requests by error code, in wire-value order; codes with no failures are left out.
    public var failureCodes: [FailureCount]

    /// Creates empty counts for `operation`.
    public init(operation: StatsOperation) {
        self.operation = operation
        self.count = 0
        self.bytes = 0
        self.nanoseconds = 0
        self.sizeBuckets = []
        self.latency = LatencyHistogram()
        self.failureCodes = []
    }

    /// Failed requests of any code.
    public var failures: UInt64 { failureCodes.reduce(0) { $0 &+ $1.count } }

    /// The bucket for sizes 2^sizeBits ..< 2^(sizeBits+1), if any request fell in it.
    public func bucket(sizeBits: Int) -> RequestSizeBucket? {
        sizeBuckets.first { $0.sizeBits == sizeBits }
    }

    /// Adds another set of counts of the same operation.
    public mutating func merge(_ other: OperationStats) {
        count &+= other.count
        bytes &+= other.bytes
        nanoseconds &+= other.nanoseconds
        latency.merge(other.latency)
        for bucket in other.sizeBuckets {
            if let i = sizeBuckets.firstIndex(where: { $0.sizeBits == bucket.sizeBits }) {
                sizeBuckets[i].merge(bucket)
            } else {
                sizeBuckets.append(bucket)
            }
        }
        sizeBuckets.sort { $0.sizeBits < $1.sizeBits }
        for failure in other.failureCodes {
            if let i = failureCodes.firstIndex(where: { $0.name == failure.name }) {
                failureCodes[i].count &+= failure.count
            } else {
                failureCodes.append(failure)
            }
        }
        let order = FailureCount.codes.map(\.name) + ["other"]
        failureCodes.sort { order.firstIndex(of: $0.name)! < order.firstIndex(of: $1.name)! }
    }

    /// Reads one connection's counters (relaxed loads: a request under way may be half counted).
    init(operation: StatsOperation, counters: OperationCounters) {
        self.init(operation: operation)
        bytes = counters.bytes.load(ordering: .relaxed)
        nanoseconds = counters.nanoseconds.load(ordering: .relaxed)
        for i in 0..<LatencyHistogram.bucketCount {
            latency.counts[i] = counters.latency[i].load(ordering: .relaxed)
        }
        // Every counted request lands in exactly one latency bucket, so the count is their sum.
        count = latency.count
        latency.maximum = counters.maxNanoseconds.load(ordering: .relaxed)
        for bits in 0..<64 {
            guard let row = counters.existingRow(bits) else { continue }
            var bucket = RequestSizeBucket(sizeBits: bits)
            bucket.bytes = counters.sizeBytes[bits].load(ordering: .relaxed)
            bucket.offsetZeroRequests = row[OperationCounters.offsetZeroSlot].load(ordering: .relaxed)
            for k in 0..<64 { bucket.exactAlignment[k] = row[k].load(ordering: .relaxed) }
            sizeBuckets.append(bucket)
        }
        for slot in 0..<9 {
            let n = counters.failures[slot].load(ordering: .relaxed)
            if n > 0 { failureCodes.append(FailureCount(name: FailureCount.name(ofSlot: slot), count: n)) }
        }
    }
}

/// Everything a ``StatsCollector`` counted up to one moment: open connections' counters plus those of
/// connections that closed. Take one with ``StatsCollector/snapshot()``; render it with ``report()``
/// (nbdkit's text format) or ``json()``.
public struct StatsSnapshot: Sendable, Hashable {
    /// Time since the collector started (nbdkit: since `get_ready`), in nanoseconds.
    public var elapsedNanoseconds: UInt64
    /// The `statsthreshold` percentage the report uses (0 turns histograms off).
    public var threshold: Int
    /// One entry per operation, in `StatsOperation.allCases` order.
    public var operations: [OperationStats]

    /// Creates a snapshot; without `operations`, every operation's counts are empty.
    public init(elapsedNanoseconds: UInt64, threshold: Int, operations: [OperationStats]? = nil) {
        self.elapsedNanoseconds = elapsedNanoseconds
        self.threshold = threshold
        self.operations = operations ?? StatsOperation.allCases.map { OperationStats(operation: $0) }
    }

    /// The counts of `operation`.
    public subscript(operation: StatsOperation) -> OperationStats {
        get { operations[operation.index] }
        set { operations[operation.index] = newValue }
    }

    /// The `total:` line's operation count: every successful request except cache, as nbdkit counts.
    public var totalOperations: UInt64 {
        operations.filter(\.operation.countsTowardTotalOperations).reduce(0) { $0 &+ $1.count }
    }

    /// The `total:` line's bytes: read + write + trim + zero.
    public var totalBytes: UInt64 {
        operations.filter(\.operation.countsTowardTotalBytes).reduce(0) { $0 &+ $1.bytes }
    }

    /// Failed requests of every operation.
    public var totalFailures: UInt64 { operations.reduce(0) { $0 &+ $1.failures } }
}

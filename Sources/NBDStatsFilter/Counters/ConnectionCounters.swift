import NBDCore
import Synchronization

/// Alignment counts for one (operation, size bucket) pair: index `k` < 64 counts requests whose offset
/// has exactly `k` trailing zero bits; index 64 counts requests at offset 0, which are aligned at every
/// level.
final class AlignmentRow: Sendable {
    static let offsetZero = 64
    let counts: InlineArray<65, Atomic<UInt64>>

    init() {
        counts = InlineArray { _ in Atomic(0) }
    }
}

/// One operation's counters for one connection. Everything is an atomic so that concurrent requests
/// of the connection and a snapshot taken from another thread need no lock; relaxed ordering suffices
/// because each counter is independent and only sums are read.
final class OperationCounters: Sendable {
    let count = Atomic<UInt64>(0)
    let bytes = Atomic<UInt64>(0)
    let nanoseconds = Atomic<UInt64>(0)
    let maxNanoseconds = Atomic<UInt64>(0)
    /// Failed requests by ``FailureCount/slot(for:)``.
    let failures: InlineArray<9, Atomic<UInt64>>
    /// Bytes per size bucket (floor(log2(count))).
    let sizeBytes: InlineArray<64, Atomic<UInt64>>
    /// Latencies, bucketed by ``LatencyHistogram/bucket(for:)``.
    let latency: InlineArray<304, Atomic<UInt64>>
    /// Alignment counts per size bucket, allocated the first time the bucket is used: most workloads use
    /// a handful of sizes, and a dense 64 × 65 table per operation would cost 33 KiB per connection.
    let alignment: InlineArray<64, AtomicLazyReference<AlignmentRow>>

    init() {
        failures = InlineArray { _ in Atomic(0) }
        sizeBytes = InlineArray { _ in Atomic(0) }
        latency = InlineArray { _ in Atomic(0) }
        alignment = InlineArray { _ in AtomicLazyReference() }
        assert(latency.count == LatencyHistogram.bucketCount)
    }

    func recordSuccess(count requestCount: UInt64, offset: UInt64, nanoseconds elapsed: UInt64, histograms: Bool) {
        count.wrappingAdd(1, ordering: .relaxed)
        bytes.wrappingAdd(requestCount, ordering: .relaxed)
        nanoseconds.wrappingAdd(elapsed, ordering: .relaxed)
        maxNanoseconds.max(elapsed, ordering: .relaxed)
        latency[LatencyHistogram.bucket(for: elapsed)].wrappingAdd(1, ordering: .relaxed)
        // As nbdkit: no size histogram for zero-length operations (flush) or with statsthreshold=0.
        guard histograms && requestCount > 0 else { return }
        let sizeBits = 63 - requestCount.leadingZeroBitCount
        sizeBytes[sizeBits].wrappingAdd(requestCount, ordering: .relaxed)
        let row = alignment[sizeBits].load() ?? alignment[sizeBits].storeIfNil(AlignmentRow())
        let slot = offset == 0 ? AlignmentRow.offsetZero : offset.trailingZeroBitCount
        row.counts[slot].wrappingAdd(1, ordering: .relaxed)
    }

    func recordFailure(_ code: NBDError.Code) {
        failures[FailureCount.slot(for: code)].wrappingAdd(1, ordering: .relaxed)
    }
}

/// The counters of one connection, registered with a ``StatsCollector`` while the connection is open.
/// Only the connection's own requests write to it, so its cache lines are not shared with other
/// connections' hot paths.
final class ConnectionCounters: Sendable {
    let operations: [OperationCounters]
    let histograms: Bool

    init(histograms: Bool) {
        self.histograms = histograms
        self.operations = StatsOperation.allCases.map { _ in OperationCounters() }
    }

    func recordSuccess(_ operation: StatsOperation, count: UInt64, offset: UInt64, nanoseconds: UInt64) {
        operations[operation.index].recordSuccess(
            count: count, offset: offset, nanoseconds: nanoseconds, histograms: histograms)
    }

    func recordFailure(_ operation: StatsOperation, _ code: NBDError.Code) {
        operations[operation.index].recordFailure(code)
    }
}

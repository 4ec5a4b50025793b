import NBDCore
import Synchronization

/// One operation's counters for one connection. Everything is an atomic so that concurrent requests
/// of the connection and a snapshot taken from another thread need no lock; relaxed ordering suffices
/// because each counter is independent and only sums are read.
@usableFromInline
final class OperationCounters: Sendable {
    /// Alignment row slots: index `k` < 64 counts requests whose offset has exactly `k` trailing zero
    /// bits; index 64 counts requests at offset 0, which are aligned at every level.
    static let alignmentSlots = 65
    static let offsetZeroSlot = 64

    // No separate request count: every counted request is in exactly one latency bucket, so the
    // snapshot derives it from their sum and the request path does one atomic add less.
    let bytes = Atomic<UInt64>(0)
    let nanoseconds = Atomic<UInt64>(0)
    let maxNanoseconds = Atomic<UInt64>(0)
    /// Failed requests by ``FailureCount/slot(for:)``.
    let failures: InlineArray<9, Atomic<UInt64>>
    /// Bytes per size bucket (floor(log2(count))).
    let sizeBytes: InlineArray<64, Atomic<UInt64>>
    /// Latencies, bucketed by ``LatencyHistogram/bucket(for:)``.
    let latency: InlineArray<304, Atomic<UInt64>>
    /// Alignment counts per size bucket: the address of a row of ``alignmentSlots`` atomics, or 0 until
    /// the bucket is first used. Most workloads use a handful of sizes, and a dense 64 × 65 table per
    /// operation would cost 33 KiB per connection. A plain address rather than an
    /// `AtomicLazyReference` keeps reference counting off the hot path; the rows live as long as this
    /// object and are freed in `deinit`.
    let alignment: InlineArray<64, Atomic<UInt>>

    init() {
        failures = InlineArray { _ in Atomic(0) }
        sizeBytes = InlineArray { _ in Atomic(0) }
        latency = InlineArray { _ in Atomic(0) }
        alignment = InlineArray { _ in Atomic(0) }
        assert(latency.count == LatencyHistogram.bucketCount)
    }

    deinit {
        for bits in 0..<64 {
            if let row = existingRow(bits) {
                row.deinitialize(count: Self.alignmentSlots)
                row.deallocate()
            }
        }
    }

    /// The alignment row of a size bucket, if a request of that size was counted.
    func existingRow(_ sizeBits: Int) -> UnsafeMutablePointer<Atomic<UInt64>>? {
        UnsafeMutablePointer(bitPattern: alignment[sizeBits].load(ordering: .acquiring))
    }

    /// The alignment row of a size bucket, created on first use. Two requests racing to create it both
    /// allocate; the loser frees its row and uses the winner's.
    func row(_ sizeBits: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        if let row = existingRow(sizeBits) { return row }
        let fresh = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: Self.alignmentSlots)
        for slot in 0..<Self.alignmentSlots { (fresh + slot).initialize(to: Atomic(0)) }
        let (exchanged, original) = alignment[sizeBits].compareExchange(
            expected: 0, desired: UInt(bitPattern: fresh), ordering: .acquiringAndReleasing)
        if exchanged { return fresh }
        fresh.deinitialize(count: Self.alignmentSlots)
        fresh.deallocate()
        return UnsafeMutablePointer(bitPattern: original)!
    }

    @usableFromInline
    func recordSuccess(count requestCount: UInt64, offset: UInt64, nanoseconds elapsed: UInt64, histograms: Bool) {
        bytes.wrappingAdd(requestCount, ordering: .relaxed)
        nanoseconds.wrappingAdd(elapsed, ordering: .relaxed)
        // `max` is a compare-exchange loop, a locked instruction every time; a new maximum is rare.
        if elapsed > maxNanoseconds.load(ordering: .relaxed) {
            maxNanoseconds.max(elapsed, ordering: .relaxed)
        }
        latency[LatencyHistogram.bucket(for: elapsed)].wrappingAdd(1, ordering: .relaxed)
        // As nbdkit: no size histogram for zero-length operations (flush) or with statsthreshold=0.
        guard histograms && requestCount > 0 else { return }
        let sizeBits = 63 - requestCount.leadingZeroBitCount
        sizeBytes[sizeBits].wrappingAdd(requestCount, ordering: .relaxed)
        let slot = offset == 0 ? Self.offsetZeroSlot : offset.trailingZeroBitCount
        row(sizeBits)[slot].wrappingAdd(1, ordering: .relaxed)
    }

    @usableFromInline
    func recordFailure(_ code: NBDError.Code) {
        failures[FailureCount.slot(for: code)].wrappingAdd(1, ordering: .relaxed)
    }
}

/// The counters of one connection, registered with a ``StatsCollector`` while the connection is open.
/// Only the connection's own requests write to it, so its cache lines are not shared with other
/// connections' hot paths.
@usableFromInline
final class ConnectionCounters: Sendable {
    @usableFromInline let operations: [OperationCounters]
    @usableFromInline let histograms: Bool

    init(histograms: Bool) {
        self.histograms = histograms
        self.operations = StatsOperation.allCases.map { _ in OperationCounters() }
    }

    @inlinable
    func recordSuccess(_ operation: StatsOperation, count: UInt64, offset: UInt64, nanoseconds: UInt64) {
        operations[operation.index].recordSuccess(
            count: count, offset: offset, nanoseconds: nanoseconds, histograms: histograms)
    }

    @inlinable
    func recordFailure(_ operation: StatsOperation, _ code: NBDError.Code) {
        operations[operation.index].recordFailure(code)
    }
}

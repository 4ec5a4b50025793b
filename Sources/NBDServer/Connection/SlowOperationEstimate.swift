import Synchronization

/// How long one connection's slow requests (`Capabilities.slowOperations`) have recently
/// taken, so that the connection can run them inline when they turn out to be fast.
///
/// A backend declares an operation slow because it *may* block for milliseconds (`fdatasync` on a
/// disk). On tmpfs, or a disk with a write-back cache that has nothing to write, the same call
/// returns in a microsecond or two; handing it to the pool then costs more than the call itself (a
/// wake-up and a context switch each way, and a reply sent on its own). So each slow request is
/// timed, wherever it ran, and a request runs inline while the running average stays under the
/// server's ``ServerConfiguration/inlineSlowOperationThreshold``. Every run, inline or pooled,
/// updates the average, so the connection moves back to the pool as soon as the calls slow down.
///
/// Written by whichever thread finished the request, read by the connection's thread; a relaxed
/// atomic is enough because the value is only a hint.
final class SlowOperationEstimate: Sendable {
    /// The running average in nanoseconds, or -1 before the first measurement: until then the
    /// operation is presumed slow, so a backend that really blocks never stalls a connection.
    private let averageNanoseconds = Atomic<Int64>(-1)

    /// Whether the recent average is known and below `threshold`.
    func isBelow(_ threshold: Duration) -> Bool {
        let average = averageNanoseconds.load(ordering: .relaxed)
        return average >= 0 && average < Self.nanoseconds(threshold)
    }

    /// Records that one slow request took `duration`. The average weighs the newest sample 1/4, so
    /// one slow call (a sync after a burst of writes) moves it well past any small threshold.
    func record(_ duration: Duration) {
        let sample = Self.nanoseconds(duration)
        let old = averageNanoseconds.load(ordering: .relaxed)
        let new = old < 0 ? sample : old - old / 4 + sample / 4
        averageNanoseconds.store(new, ordering: .relaxed)
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds < Int64.max / 1_000_000_000 else { return Int64.max / 2 }
        return max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

import CoreMetrics
import NBDCore

/// The metrics of one ``MetricsLayer``, shared by every connection it wraps: made once, so the
/// request path only increments and records.
struct ExportMetrics: Sendable {
    /// One operation's metrics.
    struct Operation: Sendable {
        let name: String
        let requests: Counter
        let bytes: Counter
        let duration: Timer
        let dimensions: [(String, String)]
        let factory: any MetricsFactory

        /// Counts a failure with `code`. The counter is looked up in the factory each time (metrics
        /// backends return the existing one for the same label and dimensions): failures are rare,
        /// and an error code known only when it happens cannot be made in advance.
        func failed(_ code: NBDError.Code) {
            requests.increment()
            Counter(
                label: "nbd_request_errors_total", dimensions: dimensions + [("error", code.name)], factory: factory
            ).increment()
        }

        func succeeded(bytes count: UInt64, since start: ContinuousClock.Instant) {
            let elapsed = ContinuousClock.now - start
            requests.increment()
            bytes.increment(by: count)
            let (seconds, attoseconds) = elapsed.components
            duration.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        }
    }

    let read: Operation
    let write: Operation
    let trim: Operation
    let zero: Operation
    let extents: Operation
    let cache: Operation
    let flush: Operation
    /// Connections open now.
    let connections: Meter
    /// Connections opened since the layer was made.
    let connectionsOpened: Counter

    init(dimensions: [(String, String)], factory: any MetricsFactory) {
        func operation(_ name: String) -> Operation {
            let tagged = dimensions + [("operation", name)]
            return Operation(
                name: name,
                requests: Counter(label: "nbd_requests_total", dimensions: tagged, factory: factory),
                bytes: Counter(label: "nbd_request_bytes_total", dimensions: tagged, factory: factory),
                duration: Timer(label: "nbd_request_duration_seconds", dimensions: tagged, factory: factory),
                dimensions: tagged, factory: factory)
        }
        read = operation("read")
        write = operation("write")
        trim = operation("trim")
        zero = operation("zero")
        extents = operation("extents")
        cache = operation("cache")
        flush = operation("flush")
        connections = Meter(label: "nbd_connections", dimensions: dimensions, factory: factory)
        connectionsOpened = Counter(label: "nbd_connections_total", dimensions: dimensions, factory: factory)
    }
}

import CoreMetrics
import NBDCore

/// A filter layer that reports every request to swift-metrics: how many, how many bytes, how many
/// failed and with which error, how long each took, and how many connections are open.
///
/// ```swift
/// MetricsSystem.bootstrap(myPrometheusFactory)   // once, at start-up, before the layer is made
/// let export = FilterStack([MetricsLayer(dimensions: [("export", "disk0")])], over: provider)
/// ```
///
/// | metric | type | dimensions |
/// |---|---|---|
/// | `nbd_requests_total` | `Counter` | `operation` |
/// | `nbd_request_bytes_total` | `Counter` | `operation` |
/// | `nbd_request_errors_total` | `Counter` | `operation`, `error` (`EIO`, `ENOSPC`, ...) |
/// | `nbd_request_duration_seconds` | `Timer` (recorded in nanoseconds) | `operation` |
/// | `nbd_connections` | `Meter` | |
/// | `nbd_connections_total` | `Counter` | |
///
/// `operation` is `read`, `write`, `trim`, `zero`, `extents`, `cache` or `flush`. Every metric also
/// carries ``dimensions``. `nbd_requests_total` counts every request that reached the layer,
/// failed or not; bytes and durations are those of successful requests (an extents request counts
/// the range asked for, as the stats filter does); a failed request is also counted once in
/// `nbd_request_errors_total`.
///
/// The export name a client asks for is deliberately not a dimension: the server accepts any name,
/// so a client could otherwise create series without bound. Name the export in ``dimensions``.
///
/// Like any filter, it measures what passes where it is placed: first in the stack it sees what
/// clients send; the time it records includes every layer below it. It calls the metrics backend
/// on each request (one counter increment and one timer record, plus a byte counter), so its cost
/// is the backend's; the stats filter (`NBDStatsFilter`) is the zero-dependency alternative that
/// only touches per-connection atomics.
public struct MetricsLayer: FilterLayer {
    public var name: String { "metrics" }
    /// Added to every metric's dimensions, for example `[("export", "disk0")]`.
    public let dimensions: [(String, String)]
    let metrics: ExportMetrics

    /// Creates the layer and its metrics in `factory` (by default the one given to
    /// `MetricsSystem.bootstrap`, which must therefore be bootstrapped first).
    public init(dimensions: [(String, String)] = [], factory: any MetricsFactory = MetricsSystem.factory) {
        self.dimensions = dimensions
        self.metrics = ExportMetrics(dimensions: dimensions, factory: factory)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(MetricsFilter(wrapping: next, metrics: metrics))
    }
}

/// What the stats filter writes to its `statsfile`: the `statsformat` parameter.
public enum StatsFormat: String, Sendable, Hashable, CaseIterable {
    /// nbdkit's text report (``StatsSnapshot/report()``), the default and nbdkit's only format.
    case text
    /// One JSON object (``StatsSnapshot/json()``).
    case json
    /// The Prometheus text exposition format (``StatsCollector/prometheus()``), for node_exporter's
    /// textfile collector. The file is always replaced atomically.
    case prometheus

    /// The statistics of `collector` in this format, as of now.
    public func render(_ collector: StatsCollector) -> String {
        switch self {
        case .text: collector.report()
        case .json: collector.json() + "\n"
        case .prometheus: collector.prometheus()
        }
    }
}

import NBDCore

/// The stats filter as a run-time `FilterLayer`, buildable from nbdkit's parameters:
/// `nbd-serve --filter=stats memory 1G statsfile=/tmp/stats.txt statsthreshold=90`.
///
/// Every connection counts into one ``collector``. With a ``file``, the nbdkit-format report is written
/// to it once, at ``shutdown()``; the collector can also be read at any time in code.
public struct StatsLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The statistics of every connection this layer wraps.
    public let collector: StatsCollector
    /// Where the report goes at shutdown, if anywhere.
    public let file: StatsFile?

    /// Creates a layer that counts into `collector` and writes the report to `file` at shutdown.
    public init(collector: StatsCollector = StatsCollector(), file: StatsFile? = nil) {
        self.collector = collector
        self.file = file
    }

    /// Creates a layer that counts into `collector` and writes no file, as in
    /// `FilterStack([MultiConnLayer(), StatsLayer(collector)], over: provider)`.
    public init(_ collector: StatsCollector) {
        self.init(collector: collector, file: nil)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(StatsFilter(wrapping: next, collector: collector))
    }

    /// Writes the report to ``file`` (once; later calls do nothing). A write error cannot be returned
    /// from shutdown, so it is written to standard error instead of being lost.
    public func shutdown() async {
        guard let file else { return }
        do {
            try file.writeOnce(collector.report())
        } catch {
            reportToStandardError("stats filter: \(error.message)\n")
        }
    }
}

extension StatsLayer: ConfigurableFilterLayer {
    public static var filterName: String { "stats" }
    public static var summary: String {
        "count requests, bytes, time, request sizes and alignment; write nbdkit's report at shutdown"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "statsfile", "the file the report is written to when the server stops", required: true),
            ParameterDescription(
                "statsappend", "true to append to the statsfile instead of replacing it", default: "false"),
            ParameterDescription(
                "statsthreshold", "percentage of requests whose sizes are listed, 0 to 100; 0 lists none",
                default: "95"),
        ]
    }

    /// Creates the layer and opens (creates or truncates) the statsfile now, so a bad path is reported
    /// before the server starts listening.
    public init(parameters: ParameterValues) throws(NBDError) {
        guard let path = parameters["statsfile"] else {
            throw NBDError(.invalidArgument, "statsfile=... is required: the file the report is written to, for example statsfile=/tmp/stats.txt")
        }
        var append = false
        if let text = parameters["statsappend"] {
            append = try parseBoolean(text, for: "statsappend")
        }
        var threshold = 95
        if let text = parameters["statsthreshold"] {
            threshold = try StatsCollector.parseThreshold(text)
        }
        let file = try StatsFile(path: path, append: append)
        self.init(collector: StatsCollector(threshold: threshold), file: file)
    }
}

import NBDCore

/// The stats filter as a run-time `FilterLayer`, buildable from nbdkit's parameters:
/// `nbd-serve --filter=stats memory 1G statsfile=/tmp/stats.txt statsthreshold=90`.
///
/// Every connection counts into one ``collector``. With a ``file``, the nbdkit-format report is written
/// to it once, at ``shutdown()``; with ``init(collector:replacing:format:every:)`` the statistics are
/// written in a chosen ``StatsFormat``, replacing the file atomically at start, every interval, and at
/// shutdown (`statsformat=prometheus statsinterval=10` for node_exporter's textfile collector). The
/// collector can also be read at any time in code.
public struct StatsLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The statistics of every connection this layer wraps.
    public let collector: StatsCollector
    /// Where the nbdkit-format report goes at shutdown, if anywhere (nil when the file is replaced
    /// periodically instead).
    public let file: StatsFile?
    /// The format written to the statsfile.
    public let format: StatsFormat
    /// How often the statsfile is rewritten while the server runs; nil: only at shutdown.
    public let interval: Duration?
    private let writer: StatsWriter?

    /// Creates a layer that counts into `collector` and writes the report to `file` at shutdown.
    public init(collector: StatsCollector = StatsCollector(), file: StatsFile? = nil) {
        self.collector = collector
        self.file = file
        self.format = .text
        self.interval = nil
        self.writer = nil
    }

    /// Creates a layer that counts into `collector` and writes its statistics in `format` to `path`,
    /// replacing the file atomically: now (so a bad path fails before the server listens), every
    /// `interval` if one is given, and at shutdown.
    public init(
        collector: StatsCollector = StatsCollector(), replacing path: String, format: StatsFormat,
        every interval: Duration? = nil
    ) throws(NBDError) {
        try self.init(collector: collector, replacing: path, format: format, every: interval, afterWrite: nil)
    }

    /// As the public initializer, calling `afterWrite` after each periodic write (tests wait on it).
    package init(
        collector: StatsCollector, replacing path: String, format: StatsFormat, every interval: Duration?,
        afterWrite: (@Sendable (Result<Void, NBDError>) -> Void)?
    ) throws(NBDError) {
        guard !path.isEmpty else {
            throw NBDError(.invalidArgument, "statsfile=: the path is empty; give the file the statistics are written to")
        }
        if let interval, interval <= .zero {
            throw NBDError(.invalidArgument, "statsinterval: the interval must be longer than zero")
        }
        let writer = StatsWriter(
            path: StatsFile.absolutePath(path), format: format, collector: collector, afterWrite: afterWrite)
        try writer.write()
        if let interval { writer.start(every: interval) }
        self.collector = collector
        self.file = nil
        self.format = format
        self.interval = interval
        self.writer = writer
    }

    /// Creates a layer that counts into `collector` and writes no file, as in
    /// `FilterStack([MultiConnLayer(), StatsLayer(collector)], over: provider)`.
    public init(_ collector: StatsCollector) {
        self.init(collector: collector, file: nil)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(StatsFilter(wrapping: next, collector: collector, exportName: connection.exportName))
    }

    /// Writes the report to ``file`` (once; later calls do nothing), or stops the periodic writes and
    /// replaces the file one last time. A write error cannot be returned from shutdown, so it is
    /// written to standard error instead of being lost.
    public func shutdown() async {
        if let writer {
            await writer.finish()
            return
        }
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
        "count requests, bytes, time, request sizes and alignment; write nbdkit's report at shutdown, "
            + "or JSON or Prometheus metrics, also periodically"
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
            ParameterDescription(
                "statsformat",
                "text (nbdkit's report), json, or prometheus (node_exporter's textfile format); "
                    + "json and prometheus replace the file atomically",
                default: "text"),
            ParameterDescription(
                "statsinterval",
                "time between rewrites of the statsfile while serving (10, 0.5, 500ms; replaced "
                    + "atomically each time); 0 writes only at shutdown",
                default: "0"),
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
        var format = StatsFormat.text
        if let text = parameters["statsformat"] {
            guard let value = StatsFormat(rawValue: text) else {
                throw NBDError(.invalidArgument, "statsformat=\(text): expected text, json or prometheus")
            }
            format = value
        }
        var interval: Duration?
        if let text = parameters["statsinterval"] {
            interval = try Self.parseInterval(text)
        }
        let collector = StatsCollector(threshold: threshold)
        if format == .text && interval == nil {
            self.init(collector: collector, file: try StatsFile(path: path, append: append))
            return
        }
        if append {
            throw NBDError(
                .invalidArgument,
                "statsappend=true cannot be used with statsformat=\(format) or statsinterval: the statsfile is "
                    + "replaced whole each time it is written")
        }
        try self.init(collector: collector, replacing: path, format: format, every: interval)
    }

    /// Parses `statsinterval`: a duration as the delay filters take it (`10`, `0.5`, `1.5s`, `500ms`),
    /// from 0 (only at shutdown: nil) to one day.
    static func parseInterval(_ text: String) throws(NBDError) -> Duration? {
        let interval = try parseDuration(text, for: "statsinterval")
        if interval == .zero { return nil }
        guard interval >= .milliseconds(1), interval <= .seconds(86_400) else {
            throw NBDError(.invalidArgument, "statsinterval=\(text): expected from 1ms to one day (86400), or 0 for only at shutdown")
        }
        return interval
    }
}

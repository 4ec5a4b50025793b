import NBDCore

/// The log filter as a run-time layer: `nbd-serve --filter=log memory 1G logfile=/tmp/nbd.log`.
/// The file is opened when the layer is created, so a log that cannot be written stops `nbd-serve`
/// at start-up with the reason, before any client connects.
public struct LogLayer: ConfigurableFilterLayer {
    public var name: String { Self.filterName }
    /// The log, or `nil` when no `logfile` was given (the filter then passes requests through).
    public let file: LogFile?

    /// Creates the layer writing to `file`.
    public init(file: LogFile?) {
        self.file = file
    }

    public static var filterName: String { "log" }
    public static var summary: String { "log every request and its result to a file, in nbdkit's log format" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("logfile", "the file to write the log to; without it the filter does nothing"),
            ParameterDescription(
                "logappend", "true to append to an existing log instead of truncating it", default: "false"),
        ]
    }

    /// Creates the layer from `logfile` and `logappend`, opening the file now.
    public init(parameters: ParameterValues) throws(NBDError) {
        let append = try parameters.boolean("logappend", default: false)
        guard let path = parameters["logfile"] else {
            self.init(file: nil)
            return
        }
        self.init(file: try LogFile(path: path, append: append))
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(LogFilter(wrapping: next, file: file, connection: connection))
    }
}

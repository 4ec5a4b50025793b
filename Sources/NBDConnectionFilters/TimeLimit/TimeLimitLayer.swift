import NBDCore

/// nbdkit's time-limit filter as a run-time layer: `nbd-serve --filter=time-limit memory 1G time-limit=30`.
public struct TimeLimitLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// How long a client may stay connected; zero is no limit.
    public let limit: Duration
    private let control = ControlSlot()

    /// Creates the layer; nbdkit's default is 60 seconds.
    public init(limit: Duration = .seconds(60)) {
        self.limit = limit
    }

    public func attach(_ control: ServerControl) {
        self.control.attach(control)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(TimeLimitFilter(next: next, limit: limit, connectionID: connection.id, control: control))
    }
}

extension TimeLimitLayer: ConfigurableFilterLayer {
    public static var filterName: String { "time-limit" }
    public static var summary: String {
        "fail requests with ESHUTDOWN and disconnect a client connected longer than a limit"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "time-limit", "how long a client may stay connected: seconds, or 1.5s, 100ms, ...; 0 for no limit",
                default: "60")
        ]
    }

    /// Creates the layer from `time-limit=`.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(limit: try parameters.duration("time-limit") ?? .seconds(60))
    }
}

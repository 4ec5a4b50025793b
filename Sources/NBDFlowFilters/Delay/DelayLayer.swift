import NBDCore

/// The delay filter as a run-time `FilterLayer`, built from nbdkit's parameters:
/// `nbd-serve --filter=delay file disk.img rdelay=100ms wdelay=100ms`.
public struct DelayLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The delays.
    public let delays: Delays

    /// Creates the layer.
    public init(delays: Delays) {
        self.delays = delays
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(try await DelayFilter.open(wrapping: next, delays: delays))
    }
}

extension DelayLayer: ConfigurableFilterLayer {
    public static var filterName: String { "delay" }
    public static var summary: String {
        "wait before requests, to simulate a slow or distant server (seconds, or with ms)"
    }
    public static var parameters: [ParameterDescription] {
        let delay = "such as 1.5, 100ms or 250us"
        return [
            ParameterDescription("delay-read", "delay before each read, \(delay)", default: "0"),
            ParameterDescription("rdelay", "alias of delay-read"),
            ParameterDescription("delay-write", "delay before each write", default: "0"),
            ParameterDescription("wdelay", "delay before each write, zero and trim"),
            ParameterDescription("delay-zero", "delay before each write-zeroes", default: "0"),
            ParameterDescription("delay-trim", "delay before each trim", default: "0"),
            ParameterDescription("delay-extents", "delay before each block status request", default: "0"),
            ParameterDescription("delay-cache", "delay before each cache request", default: "0"),
            ParameterDescription("delay-open", "delay before a client's connection opens", default: "0"),
            ParameterDescription("delay-close", "delay before a client's connection closes", default: "0"),
            ParameterDescription(
                "delay-fast-zero", "false to fail fast zeroes at once (ENOTSUP) instead of delaying them",
                default: "true"),
        ]
    }

    /// Creates the layer from the `delay-*`, `rdelay` and `wdelay` parameters, later ones winning.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(delays: try Delays(parameters: parameters))
    }
}

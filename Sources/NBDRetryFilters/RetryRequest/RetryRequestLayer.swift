import NBDCore

/// The retry-request filter as a run-time layer:
/// `nbd-serve --filter=retry-request file disk.img retry-request-retries=5 retry-request-delay=100ms`.
public struct RetryRequestLayer: ConfigurableFilterLayer {
    public var name: String { Self.filterName }
    /// The parameters every connection uses.
    public let configuration: RetryRequestConfiguration

    /// Creates the layer.
    public init(configuration: RetryRequestConfiguration) {
        self.configuration = configuration
    }

    public static var filterName: String { "retry-request" }
    public static var summary: String { "retry a failed request on the same layer below" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("retry-request-retries", "how many times one request is retried", default: "2"),
            ParameterDescription(
                "retry-request-delay", "seconds to wait before each retry (2, 0.5, 100ms; never 0)", default: "2"),
            ParameterDescription(
                "retry-request-open", "false to fail at once when opening the layers below fails", default: "true"),
        ]
    }

    /// Creates the layer from `retry-request-retries`, `retry-request-delay` and `retry-request-open`.
    public init(parameters: ParameterValues) throws(NBDError) {
        try self.init(
            configuration: RetryRequestConfiguration(
                retries: parameters.integer("retry-request-retries", in: 0...Int(Int32.max)) ?? 2,
                delay: parameters.duration("retry-request-delay") ?? .seconds(2),
                retriesOpen: parameters.boolean("retry-request-open", default: true)))
    }

    /// Opens the layers below, retrying that too when `retry-request-open` is on.
    public func open(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow) async throws(NBDError)
        -> AnyBlockBackend
    {
        AnyBlockBackend(
            try await RetryRequestFilter.open(for: connection, configuration: configuration, below: openBelow))
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(RetryRequestFilter(wrapping: next, configuration: configuration))
    }
}

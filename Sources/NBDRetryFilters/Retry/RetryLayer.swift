import NBDCore

/// The retry filter as a run-time layer: `nbd-serve --filter=retry nbd ... retries=10 retry-delay=1`.
///
/// It implements `FilterLayer.open(for:below:)` to keep the function that opens the stack below it,
/// which is how it reopens that stack after a failure. ``wrap(_:for:)``, used only by callers that
/// open the layers below themselves, cannot reopen: that filter retries on the same backend.
public struct RetryLayer: ConfigurableFilterLayer {
    public var name: String { Self.filterName }
    /// The parameters every connection uses.
    public let configuration: RetryConfiguration

    /// Creates the layer.
    public init(configuration: RetryConfiguration) {
        self.configuration = configuration
    }

    public static var filterName: String { "retry" }
    public static var summary: String { "on an error, reopen the layers below and retry the request" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("retries", "how many times one request is retried", default: "5"),
            ParameterDescription(
                "retry-delay", "seconds to wait before retrying (2, 0.5, 100ms; never 0)", default: "2"),
            ParameterDescription("retry-exponential", "double the delay after each retry", default: "yes"),
            ParameterDescription(
                "retry-readonly", "reopen the layers below read-only after the first failure", default: "no"),
        ]
    }

    /// Creates the layer from `retries`, `retry-delay`, `retry-exponential` and `retry-readonly`.
    public init(parameters: ParameterValues) throws(NBDError) {
        try self.init(
            configuration: RetryConfiguration(
                retries: parameters.integer("retries", in: 0...Int(Int32.max)) ?? 5,
                delay: parameters.duration("retry-delay") ?? .seconds(2),
                isExponential: parameters.boolean("retry-exponential", default: true),
                reopensReadOnly: parameters.boolean("retry-readonly", default: false)))
    }

    public func open(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow) async throws(NBDError)
        -> AnyBlockBackend
    {
        AnyBlockBackend(try await RetryFilter.open(for: connection, configuration: configuration, below: openBelow))
    }

    /// Wraps an already opened stack; the filter retries on it without reopening (see the type's notes).
    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(RetryFilter(wrapping: next, configuration: configuration, connection: connection))
    }
}

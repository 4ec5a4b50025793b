import NBDCore

/// The limit filter as a run-time `FilterLayer`, built from nbdkit's parameter:
/// `nbd-serve --filter=limit memory 1G limit=4`.
///
/// The filter refuses the client's `NBD_OPT_GO` (or `NBD_OPT_INFO`) when the limit is reached; nbdkit
/// also refuses before the handshake, which a filter here cannot see. `nbd-serve` prints each
/// refusal as an error line naming the connection and the limit.
public struct LimitLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The shared count of open connections.
    public let limit: ConnectionLimit

    /// Creates the layer; nbdkit's default is one client at a time, 0 is no limit.
    public init(limit: Int = 1) {
        self.limit = ConnectionLimit(limit)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(try LimitFilter(wrapping: next, limit: limit))
    }
}

extension LimitLayer: ConfigurableFilterLayer {
    public static var filterName: String { "limit" }
    public static var summary: String { "serve at most N clients at once; more are refused with a clear message" }
    public static var parameters: [ParameterDescription] {
        [ParameterDescription("limit", "how many clients may be connected at once; 0 for no limit", default: "1")]
    }

    /// Creates the layer from `limit`.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(limit: try parameters.integer("limit", in: 0...Int(Int32.max)) ?? 1)
    }
}

import NBDCore

/// The truncate filter as a run-time `FilterLayer`, built from nbdkit's parameters:
/// `nbd-serve --filter=truncate file disk.img round-up=512`.
public struct TruncateLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The new size, or `nil` to keep the layer below's before rounding.
    public let truncate: UInt64?
    /// Round the size up to a multiple of this power of two, or `nil`.
    public let roundUp: UInt64?
    /// Round the size down to a multiple of this power of two, or `nil`.
    public let roundDown: UInt64?

    /// Creates the layer. Roundings must be powers of two (checked here, before any client connects).
    public init(truncate: UInt64? = nil, roundUp: UInt64? = nil, roundDown: UInt64? = nil) throws(NBDError) {
        if let roundUp { try TruncateFilter<AnyBlockBackend>.checkRounding(roundUp, "round-up") }
        if let roundDown { try TruncateFilter<AnyBlockBackend>.checkRounding(roundDown, "round-down") }
        self.truncate = truncate
        self.roundUp = roundUp
        self.roundDown = roundDown
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(try TruncateFilter(wrapping: next, truncate: truncate, roundUp: roundUp, roundDown: roundDown))
    }
}

extension TruncateLayer: ConfigurableFilterLayer {
    public static var filterName: String { "truncate" }
    public static var summary: String {
        "change the export's size: truncate it, or extend it with bytes that read as zeroes"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "truncate", "the new size, smaller or larger than the layer below (a size such as 10G)"),
            ParameterDescription("round-up", "round the size up to a multiple of this power of two, such as 512"),
            ParameterDescription("round-down", "round the size down to a multiple of this power of two, such as 4K"),
        ]
    }

    /// Creates the layer from `truncate`, `round-up` and `round-down` (all sizes, all optional).
    public init(parameters: ParameterValues) throws(NBDError) {
        try self.init(
            truncate: try parameters.size("truncate"), roundUp: try parameters.size("round-up"),
            roundDown: try parameters.size("round-down"))
    }
}

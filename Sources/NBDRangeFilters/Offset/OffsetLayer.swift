import NBDCore

/// The offset filter as a run-time `FilterLayer`, built from nbdkit's parameters:
/// `nbd-serve --filter=offset file disk.img offset=1M range=100M`.
public struct OffsetLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// Where the window starts in the layer below.
    public let offset: UInt64
    /// The window's length, or `nil` for everything from ``offset`` to the end.
    public let range: UInt64?

    /// Creates the layer; the defaults are nbdkit's (`offset=0`, the rest of the layer below).
    public init(offset: UInt64 = 0, range: UInt64? = nil) {
        self.offset = offset
        self.range = range
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(try OffsetFilter(wrapping: next, offset: offset, range: range))
    }
}

extension OffsetLayer: ConfigurableFilterLayer {
    public static var filterName: String { "offset" }
    public static var summary: String {
        "serve the bytes [offset, offset+range) of the layer below as the whole export"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("offset", "where the served window starts, a size such as 1M", default: "0"),
            ParameterDescription(
                "range", "how many bytes to serve, a size such as 100M (default: up to the end of the layer below)"),
        ]
    }

    /// Creates the layer from `offset` and `range`, both sizes (`1M`, `65536`). Whether the window fits
    /// is checked when a client connects, against the layer below's size.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(offset: try parameters.size("offset", default: 0), range: try parameters.size("range"))
    }
}

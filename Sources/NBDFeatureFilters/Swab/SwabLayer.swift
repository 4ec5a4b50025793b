import NBDCore

/// The swab filter as a run-time `FilterLayer`: `nbd-serve --filter=swab file disk.img swab-bits=32`.
public struct SwabLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The word whose bytes are reversed.
    public let width: SwabWidth

    /// Creates the layer; nbdkit's default is `swab-bits=16`.
    public init(width: SwabWidth = SwabWidth(bits: 16)!) {
        self.width = width
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(SwabFilter(wrapping: next, width: width))
    }
}

extension SwabLayer: ConfigurableFilterLayer {
    public static var filterName: String { "swab" }
    public static var summary: String { "reverse the byte order of every 16, 32 or 64-bit word (swab-bits)" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "swab-bits", "the word size in bits: 8 (no change), 16 (swap byte pairs), 32 or 64", default: "16")
        ]
    }

    /// Creates the layer from `swab-bits`.
    public init(parameters: ParameterValues) throws(NBDError) {
        let bits = try parameters.choice("swab-bits", ["8": 8, "16": 16, "32": 32, "64": 64], default: 16)
        self.init(width: SwabWidth(bits: bits)!)
    }
}

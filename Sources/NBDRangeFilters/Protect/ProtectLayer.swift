import NBDCore

/// The protect filter as a run-time `FilterLayer`, built from nbdkit's parameters:
/// `nbd-serve --filter=protect file disk.img protect=0-0x1bd protect=~1048576-`.
public struct ProtectLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The protected ranges.
    public let protected: ProtectedRanges

    /// Creates the layer.
    public init(protecting ranges: ProtectedRanges) {
        self.protected = ranges
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(ProtectFilter(wrapping: next, protecting: protected))
    }
}

extension ProtectLayer: ConfigurableFilterLayer {
    public static var filterName: String { "protect" }
    public static var summary: String {
        "refuse (EPERM) writes, zeroes and trims that would change protected byte ranges"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "protect",
                "START-END (inclusive byte offsets, decimal, 0NN octal or 0xNN hex; either may be omitted) to protect, ~START-END to protect everything else",
                repeatable: true)
        ]
    }

    /// Creates the layer from every `protect=` value. With none, nothing is protected, as in nbdkit.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(protecting: try ProtectedRanges(parsing: parameters.all("protect")))
    }
}

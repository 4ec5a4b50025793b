import NBDCore

/// The map filter as a run-time `FilterLayer`: `nbd-serve --filter=map file orig.img map=0-511:512
/// map=512-1023:0`.
public struct MapLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The remapping.
    public let map: RangeMap

    /// Creates the layer.
    public init(map: RangeMap) {
        self.map = map
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(MapFilter(wrapping: next, map: map))
    }
}

extension MapLayer: ConfigurableFilterLayer {
    public static var filterName: String { "map" }
    public static var summary: String { "remap byte ranges onto other places of the layer below (map=START-END:DEST)" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "map",
                "START-END:DEST sends bytes START to END (inclusive) to DEST below; the first rule given wins; unmapped bytes stay",
                repeatable: true)
        ]
    }

    /// Creates the layer from every `map` rule, in order.
    public init(parameters: ParameterValues) throws(NBDError) {
        var rules: [RangeMap.Rule] = []
        for text in parameters.all("map") { rules.append(try RangeMap.Rule(parsing: text)) }
        self.init(map: RangeMap(rules: rules))
    }
}

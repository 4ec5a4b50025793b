import NBDCore

/// The ddrescue filter as a run-time `FilterLayer`: `nbd-serve --filter=ddrescue file disk.img
/// ddrescue-mapfile=disk.map`. The mapfile is read once, when the server starts.
public struct DDRescueLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The rescued ranges.
    public let map: RescueMap

    /// Creates the layer.
    public init(map: RescueMap) {
        self.map = map
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(DDRescueFilter(wrapping: next, map: map))
    }
}

extension DDRescueLayer: ConfigurableFilterLayer {
    public static var filterName: String { "ddrescue" }
    public static var summary: String {
        "read-only: reads of blocks a GNU ddrescue mapfile does not mark rescued fail with EIO"
    }
    public static var parameters: [ParameterDescription] {
        [ParameterDescription("ddrescue-mapfile", "the GNU ddrescue mapfile of the image", required: true)]
    }

    /// Creates the layer by reading `ddrescue-mapfile`.
    public init(parameters: ParameterValues) throws(NBDError) {
        let path = try parameters.required("ddrescue-mapfile", example: "disk.map")
        self.init(map: try RescueMap(contentsOf: path))
    }
}

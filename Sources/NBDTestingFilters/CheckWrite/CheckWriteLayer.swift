import NBDCore

/// The checkwrite filter as a run-time `FilterLayer`: `nbd-serve --filter=checkwrite file disk.img
/// --run 'nbdcopy "$uri" "$uri"'`.
public struct CheckWriteLayer: FilterLayer {
    public var name: String { Self.filterName }

    /// Creates the layer.
    public init() {}

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(CheckWriteFilter(wrapping: next, connection: connection))
    }
}

extension CheckWriteLayer: ConfigurableFilterLayer {
    public static var filterName: String { "checkwrite" }
    public static var summary: String {
        "writes check that the data below is already the same (EIO if not); the layer below is opened read-only"
    }
    public static var parameters: [ParameterDescription] { [] }
    public static var opensLayerBelowReadOnly: Bool { true }

    /// Creates the layer; the filter has no parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

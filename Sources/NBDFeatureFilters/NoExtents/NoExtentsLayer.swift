import NBDCore

/// The noextents filter as a run-time `FilterLayer`: `nbd-serve --filter=noextents file disk.img`.
public struct NoExtentsLayer: FilterLayer {
    public var name: String { Self.filterName }

    /// Creates the layer.
    public init() {}

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(NoExtentsFilter(wrapping: next))
    }
}

extension NoExtentsLayer: ConfigurableFilterLayer {
    public static var filterName: String { "noextents" }
    public static var summary: String { "hide allocation (block status): the export looks fully allocated" }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; the filter has no parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

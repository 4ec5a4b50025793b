import NBDCore

/// The rotational filter as a run-time `FilterLayer`: `nbd-serve --filter=rotational memory 1G
/// rotational=false`.
public struct RotationalLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The rotational property to advertise.
    public let isRotational: Bool

    /// Creates the layer; nbdkit's default is `rotational=true`.
    public init(isRotational: Bool = true) {
        self.isRotational = isRotational
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(RotationalFilter(wrapping: next, isRotational: isRotational))
    }
}

extension RotationalLayer: ConfigurableFilterLayer {
    public static var filterName: String { "rotational" }
    public static var summary: String { "set or clear the rotational (spinning disk) property clients see" }
    public static var parameters: [ParameterDescription] {
        [ParameterDescription("rotational", "true: advertise a spinning disk; false: a solid-state one", default: "true")]
    }

    /// Creates the layer from `rotational`, a boolean.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(isRotational: try parameters.boolean("rotational", default: true))
    }
}

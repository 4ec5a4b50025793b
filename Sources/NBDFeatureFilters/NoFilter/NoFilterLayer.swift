import NBDCore

/// The nofilter filter as a run-time `FilterLayer`: `nbd-serve --filter=nofilter memory 1G`.
///
/// A run-time stack gains nothing from a layer that only forwards, so this one hands the layer below
/// back unchanged: the connection's requests never pass through it.
public struct NoFilterLayer: FilterLayer {
    public var name: String { Self.filterName }

    /// Creates the layer.
    public init() {}

    /// Returns `next` itself.
    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        next
    }
}

extension NoFilterLayer: ConfigurableFilterLayer {
    public static var filterName: String { "nofilter" }
    public static var summary: String { "pass every request through unchanged (for testing stacks)" }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; the filter has no parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

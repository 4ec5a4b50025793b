import NBDCore

/// The cacheextents filter as a run-time `FilterLayer`: `nbd-serve --filter=cacheextents file
/// disk.img`. Deprecated in nbdkit 1.44 (removed in 1.46); kept so that the command lines that
/// still name it (KubeVirt CDI's VDDK importer) run unchanged.
public struct CacheExtentsLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The answer every connection shares.
    public let cache = CachedExtents()

    /// Creates the layer with an empty cache.
    public init() {}

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(CacheExtentsFilter(wrapping: next, cache: cache))
    }
}

extension CacheExtentsLayer: ConfigurableFilterLayer {
    public static var filterName: String { "cacheextents" }
    public static var summary: String {
        "deprecated (nbdkit 1.44): answer block status from the last answer of the layer below when it covers the request"
    }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; the filter has no parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

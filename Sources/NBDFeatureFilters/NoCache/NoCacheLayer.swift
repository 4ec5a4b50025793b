import NBDCore

/// The nocache filter as a run-time `FilterLayer`, built from nbdkit's parameter:
/// `nbd-serve --filter=nocache file disk.img cachemode=nop`.
public struct NoCacheLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// How cache requests are handled.
    public let mode: CacheMode

    /// Creates the layer; the default is nbdkit's (`cachemode=none`).
    public init(mode: CacheMode = .none) {
        self.mode = mode
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(NoCacheFilter(wrapping: next, mode: mode))
    }
}

extension NoCacheLayer: ConfigurableFilterLayer {
    public static var filterName: String { "nocache" }
    public static var summary: String { "disable, emulate or ignore client cache (prefetch) requests (cachemode)" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "cachemode", "none (cache not advertised), emulate (done as reads) or nop (accepted and ignored)",
                default: "none")
        ]
    }

    /// Creates the layer from `cachemode`.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(
            mode: try parameters.choice("cachemode", ["none": .none, "emulate": .emulate, "nop": .nop], default: .none))
    }
}

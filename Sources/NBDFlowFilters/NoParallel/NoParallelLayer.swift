import NBDCore

/// The noparallel filter as a run-time `FilterLayer`, built from nbdkit's parameter:
/// `nbd-serve --filter=noparallel file disk.img serialize=connections`.
public struct NoParallelLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// How much is serialized.
    public let mode: SerializeMode
    /// The lock every connection of the export shares (all-requests and connections modes).
    public let sharedLock = AsyncLock()

    /// Creates the layer; the default is nbdkit's (`serialize=requests`).
    public init(mode: SerializeMode = .requests) {
        self.mode = mode
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(await NoParallelFilter(wrapping: next, mode: mode, sharedLock: sharedLock))
    }
}

extension NoParallelLayer: ConfigurableFilterLayer {
    public static var filterName: String { "noparallel" }
    public static var summary: String {
        "run requests one at a time: per connection, across connections, or one client at a time"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "serialize",
                "requests (one request per connection at a time), all-requests (one at a time overall) or connections (one client at a time)",
                default: "requests")
        ]
    }

    /// Creates the layer from `serialize`.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(
            mode: try parameters.choice(
                "serialize", ["requests": .requests, "all-requests": .allRequests, "connections": .connections],
                default: .requests))
    }
}

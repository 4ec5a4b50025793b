/// The multi-conn filter as a run-time ``FilterLayer``, for stacks built from a list.
public struct MultiConnLayer: FilterLayer {
    public var name: String { "multi-conn" }
    /// The coordinator every connection of this layer registers with.
    public let coordinator: MultiConn

    /// Creates the layer with its own coordinator.
    public init(_ configuration: MultiConnConfiguration = MultiConnConfiguration(), flushExecutor: (any TaskExecutor)? = nil) {
        self.coordinator = MultiConn(configuration, flushExecutor: flushExecutor)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        AnyBlockBackend(try await coordinator.filter(wrapping: next, for: connection))
    }
}

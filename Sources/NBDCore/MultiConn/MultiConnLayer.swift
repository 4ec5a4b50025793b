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

extension MultiConnLayer: ConfigurableFilterLayer {
    public static var filterName: String { "multi-conn" }
    public static var summary: String {
        "enable, emulate or disable NBD_FLAG_CAN_MULTI_CONN (flush consistency across connections)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "multi-conn-mode", "auto, emulate, plugin, disable or unsafe", default: "auto"),
            ParameterDescription(
                "multi-conn-track-dirty", "connection (alias conn), fast or off: when a flush may be skipped",
                default: "connection"),
            ParameterDescription(
                "multi-conn-exportname", "true to group connections by export name; false puts all in one group",
                default: "false"),
            ParameterDescription("multi-conn-export-name", "alias of multi-conn-exportname"),
        ]
    }

    /// Creates the layer from nbdkit's `multi-conn-*` parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        var configuration = MultiConnConfiguration()
        if let mode = parameters["multi-conn-mode"] {
            configuration.mode = try MultiConnConfiguration.parseMode(mode)
        }
        if let tracking = parameters["multi-conn-track-dirty"] {
            configuration.dirtyTracking = try MultiConnConfiguration.parseDirtyTracking(tracking)
        }
        if let byName = parameters["multi-conn-exportname"] ?? parameters["multi-conn-export-name"] {
            configuration.groupsByExportName = try parseBoolean(byName, for: "multi-conn-exportname")
        }
        self.init(configuration)
    }
}

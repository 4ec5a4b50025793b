import NBDCore

/// nbdkit's `zero` plugin: an export of zero bytes, read-only, for testing what clients and filters
/// do at the edge of an empty device. It takes no parameters.
public struct ZeroBackendProvider: BackendProvider {
    public typealias Backend = ZeroBackend

    /// Creates the empty export.
    public init() {}

    /// Opens a connection's view.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> ZeroBackend {
        ZeroBackend()
    }
}

extension ZeroBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "zero" }
    public static var summary: String { "an empty (0-byte) read-only export, as nbdkit's zero plugin (zero)" }
    public static var parameters: [ParameterDescription] { [] }
    public static var positionalParameter: String? { nil }
    public static var example: String { "zero" }

    /// Creates the export; there are no parameters to read.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        self.init()
    }
}

import NBDCore

/// nbdkit's `full` plugin: an export that reads as zeroes and fails every write, zero and trim with
/// `ENOSPC`, like a thin-provisioned disk whose host is full. Tests how a client reports a full disk.
public struct FullBackendProvider: BackendProvider {
    public typealias Backend = FullBackend

    /// The export size in bytes.
    public let size: UInt64

    /// Creates an export of `size` bytes.
    ///
    /// - Throws: `NBDError.Code.invalidArgument` if `size` is larger than 2^63 - 1.
    public init(size: UInt64) throws(NBDError) {
        self.size = try checkedExportSize(size, backend: "full")
    }

    /// Opens a connection's view; read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> FullBackend {
        FullBackend(size: size, isReadOnly: connection.isReadOnly)
    }
}

extension FullBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "full" }
    public static var summary: String { "reads zeroes, fails writes with ENOSPC, as nbdkit's full plugin (full SIZE)" }
    public static var parameters: [ParameterDescription] { [GeneratedExportSize.description(required: true)] }
    public static var positionalParameter: String? { "size" }
    public static var example: String { "full 1G" }

    /// Creates the export from `size`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try self.init(size: try GeneratedExportSize.read(parameters, backend: "full"))
    }
}

import NBDCore

/// nbdkit's `null` plugin: an export of any size that reads as zeroes and throws away every write.
///
/// Useful to measure a client or the server itself without storage in the way, and to test what a
/// client does with data that never sticks.
///
/// ```swift
/// let export = try NullBackendProvider(size: 1 << 30)
/// ```
public struct NullBackendProvider: BackendProvider {
    public typealias Backend = NullBackend

    /// The export size in bytes.
    public let size: UInt64

    /// Creates an export of `size` bytes (0, nbdkit's default, serves an empty export).
    ///
    /// - Throws: `NBDError.Code.invalidArgument` if `size` is larger than 2^63 - 1.
    public init(size: UInt64 = 0) throws(NBDError) {
        self.size = try checkedExportSize(size, backend: "null")
    }

    /// Opens a connection's view; read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> NullBackend {
        NullBackend(size: size, isReadOnly: connection.isReadOnly)
    }
}

extension NullBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "null" }
    public static var summary: String { "reads zeroes and discards writes, as nbdkit's null plugin (null [SIZE])" }
    public static var parameters: [ParameterDescription] { [GeneratedExportSize.description(required: false)] }
    public static var positionalParameter: String? { "size" }
    public static var example: String { "null 1G" }

    /// Creates the export from `size` (default 0).
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try self.init(size: try GeneratedExportSize.read(parameters, backend: "null", default: 0))
    }
}

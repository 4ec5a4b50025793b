import NBDCore

/// nbdkit's `pattern` plugin: a read-only export in which every 8-byte word holds its own offset as
/// a big-endian 64-bit number (`00 00 00 00 00 00 00 08` at offset 8). If the size is not a multiple
/// of 8 the last word is cut short.
///
/// Any byte read tells where it came from, which makes misplaced data easy to spot in a test.
public struct PatternBackendProvider: BackendProvider {
    public typealias Backend = PatternBackend

    /// The export size in bytes.
    public let size: UInt64

    /// Creates an export of `size` bytes.
    ///
    /// - Throws: `NBDError.Code.invalidArgument` if `size` is larger than 2^63 - 1.
    public init(size: UInt64) throws(NBDError) {
        self.size = try checkedExportSize(size, backend: "pattern")
    }

    /// Opens a connection's (always read-only) view.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> PatternBackend {
        PatternBackend(size: size)
    }
}

extension PatternBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "pattern" }
    public static var summary: String {
        "read-only; each 8 bytes hold their offset, big-endian, as nbdkit's pattern plugin (pattern SIZE)"
    }
    public static var parameters: [ParameterDescription] { [GeneratedExportSize.description(required: false)] }
    public static var positionalParameter: String? { "size" }
    public static var example: String { "pattern 1G" }

    /// Creates the export from `size`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try self.init(size: try GeneratedExportSize.read(parameters, backend: "pattern", default: 0))
    }
}

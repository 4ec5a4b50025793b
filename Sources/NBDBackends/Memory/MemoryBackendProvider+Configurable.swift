import NBDCore

extension MemoryBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "memory" }
    public static var summary: String { "a sparse RAM disk shared by all connections (memory SIZE)" }
    public static var parameters: [ParameterDescription] {
        [ParameterDescription("size", "the export size, e.g. 1G; suffixes K M G T P E", required: true)]
    }
    public static var positionalParameter: String? { "size" }
    public static var example: String { "memory 1G" }

    /// Creates the export from `size`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try self.init(size: try parseSize(try parameters.required("size", example: "1G"), for: "size"))
    }
}

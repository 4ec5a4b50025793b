import NBDCore

extension ConnectionCacheProvider: ConfigurableBackendProvider {
    public static var backendName: String { "connection-cache" }
    public static var summary: String {
        "a test export whose connections each keep a private cache until they flush"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("size", "the export size, e.g. 32 or 1M", required: true),
            ParameterDescription("init", "text stored at offset 0 of each export's image when it is created", default: ""),
            ParameterDescription("strictfua", "true: a FUA write writes through only the request's range", default: "false"),
        ]
    }
    public static var positionalParameter: String? { "size" }
    public static var example: String { "connection-cache 1M" }

    /// Creates the export from `size`, `init` and `strictfua`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try self.init(
            size: try parseSize(try parameters.required("size", example: "1M"), for: "size"),
            initialText: parameters["init"] ?? "",
            strictFUA: try parameters.boolean("strictfua", default: false))
    }
}

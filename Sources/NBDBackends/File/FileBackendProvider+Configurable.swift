import NBDCore

extension FileBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "file" }
    public static var summary: String { "a regular file or block device (file PATH)" }
    public static var parameters: [ParameterDescription] {
        [ParameterDescription("file", "the path of the file or device", required: true)]
    }
    public static var positionalParameter: String? { "file" }
    public static var example: String { "file disk.img" }

    /// Opens `file`, for reading only when the export is read-only.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try self.init(path: try parameters.required("file", example: "disk.img"), readOnly: options.isReadOnly)
    }
}

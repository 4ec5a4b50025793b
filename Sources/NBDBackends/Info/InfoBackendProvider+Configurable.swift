import NBDCore

extension InfoBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "info" }
    public static var summary: String {
        "a read-only export showing the client its export name, its address, or a clock (info [mode=]MODE)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "mode", "exportname, base64exportname, address, time, uptime or conntime", default: "exportname")
        ]
    }
    public static var positionalParameter: String? { "mode" }
    public static var example: String { "info mode=address" }

    /// Creates the export from `mode`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        self.init(
            mode: try parameters.choice(
                "mode",
                [
                    "exportname": InfoMode.exportName, "base64exportname": .base64ExportName, "address": .address,
                    "time": .time, "uptime": .uptime, "conntime": .connTime,
                ], default: .exportName))
    }
}

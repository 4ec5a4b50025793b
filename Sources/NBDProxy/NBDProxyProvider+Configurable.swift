import NBDClient
import NBDCore

extension NBDProxyProvider: ConfigurableBackendProvider {
    public static var backendName: String { "nbd" }
    public static var summary: String { "serve an export of another NBD server (qemu-nbd, nbdkit, nbd-serve)" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "uri", "the upstream as an NBD URI: nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH"),
            ParameterDescription("socket", "the upstream's Unix socket"),
            ParameterDescription("hostname", "the upstream's TCP host name or address"),
            ParameterDescription("port", "the upstream's TCP port or service name, with hostname=", default: "10809"),
            ParameterDescription("export", "the upstream export name", default: ""),
            ParameterDescription(
                "shared",
                "true: one upstream connection opened at start serves every client; false: one per client connection",
                default: "false"),
            ParameterDescription("retry", "retry a failed connect this many times, one second apart", default: "0"),
        ]
    }
    public static var positionalParameter: String? { "uri" }
    public static var example: String { "nbd socket=/tmp/upstream.sock" }

    /// Creates the provider from `uri`, `socket` or `hostname`/`port`, and `export`, `shared`, `retry`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        let given = ["uri", "socket", "hostname"].filter { parameters.contains($0) }
        guard given.count == 1 else {
            throw NBDError(
                .invalidArgument,
                given.isEmpty
                    ? "nbd: say where the upstream is with exactly one of socket=PATH, hostname=HOST or uri=URI, for example \(Self.example)"
                    : "nbd: give only one of \(given.map { "\($0)=" }.joined(separator: ", "))")
        }
        if parameters.contains("port") && !parameters.contains("hostname") {
            throw NBDError(.invalidArgument, "port=\(parameters["port"]!): port= goes with hostname=")
        }
        var endpoint: NBDEndpoint
        if let uri = parameters["uri"] {
            do {
                endpoint = try NBDEndpoint(uri: uri)
            } catch {
                throw NBDError(error.code, "uri=\(uri): \(error.message)")
            }
        } else if let socket = parameters["socket"] {
            guard !socket.isEmpty else { throw NBDError(.invalidArgument, "socket=: expected a socket path") }
            endpoint = .unix(socket)
        } else {
            let host = parameters["hostname"]!
            guard !host.isEmpty else { throw NBDError(.invalidArgument, "hostname=: expected a host name or address") }
            endpoint = NBDEndpoint(.tcp(host: host, port: parameters["port"] ?? "10809"))
        }
        if let uriExport = endpoint.exportName, !uriExport.isEmpty, parameters.contains("export") {
            throw NBDError(
                .invalidArgument, "export=\(parameters["export"]!): the uri already names export '\(uriExport)'")
        }
        let exportName = parameters["export"] ?? endpoint.exportName ?? ""
        endpoint.exportName = nil
        let retries: Int = try parameters.integer("retry", in: 0...86400) ?? 0
        try await self.init(
            endpoint: endpoint, exportName: exportName, shared: try parameters.boolean("shared", default: false),
            retries: retries, isReadOnly: options.isReadOnly)
    }
}

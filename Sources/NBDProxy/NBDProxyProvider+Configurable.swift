import NBDClient
import NBDCore
import NBDTLSClient

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
            ParameterDescription(
                "tls",
                "off: plaintext; on: TLS if the upstream offers it; require: TLS or no connection (default off, on when another tls- parameter is given, require with an nbds URI)"
            ),
            ParameterDescription(
                "tls-certificates", "directory with ca-cert.pem (and client-cert.pem, client-key.pem) for the upstream"),
            ParameterDescription(
                "tls-verify", "false: accept any upstream certificate (no CA or name check)", default: "true"),
            ParameterDescription("tls-username", "the user name of the pre-shared key (default: the login name)"),
            ParameterDescription("tls-psk", "psktool's username:hexkey file: use a pre-shared key with the upstream"),
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
        endpoint.tls = try Self.tlsOptions(parameters, uriOptions: endpoint.tls)
        let retries: Int = try parameters.integer("retry", in: 0...86400) ?? 0
        try await self.init(
            endpoint: endpoint, exportName: exportName, shared: try parameters.boolean("shared", default: false),
            retries: retries, isReadOnly: options.isReadOnly)
    }

    /// nbdkit's nbd-plugin TLS parameters over what an `nbds` URI said: `tls` defaults to `off`,
    /// to `on` when another `tls-` parameter is given, and an `nbds` URI always requires TLS.
    /// The credentials are loaded now, so a missing file fails at start, not at the first client.
    private static func tlsOptions(_ parameters: ParameterValues, uriOptions: ClientTLSOptions?) throws(NBDError)
        -> ClientTLSOptions?
    {
        let names = ["tls-certificates", "tls-verify", "tls-username", "tls-psk"]
        let anyGiven = names.contains { parameters.contains($0) }
        var options = uriOptions ?? ClientTLSOptions(mode: anyGiven ? .on : .off)
        if parameters.contains("tls") {
            let mode = try parameters.choice(
                "tls", ["off": ClientTLSMode.off, "on": .on, "require": .require], default: options.mode)
            if uriOptions != nil && mode != .require {
                throw NBDError(
                    .invalidArgument, "tls=\(mode.rawValue): the nbds URI requires TLS; use tls=require or an nbd URI")
            }
            options.mode = mode
        }
        if let directory = parameters["tls-certificates"] {
            guard !directory.isEmpty else { throw NBDError(.invalidArgument, "tls-certificates=: expected a directory") }
            options.certificatesDirectory = directory
        }
        if let file = parameters["tls-psk"] {
            guard !file.isEmpty else { throw NBDError(.invalidArgument, "tls-psk=: expected a file") }
            options.pskFile = file
        }
        if let name = parameters["tls-username"] { options.username = name }
        options.verifyPeer = try parameters.boolean("tls-verify", default: options.verifyPeer)
        guard options.mode != .off else { return nil }
        do {
            _ = try GnuTLSClientProvider().credentials(for: options)
        } catch {
            let parameter = options.pskFile != nil ? "tls-psk" : "tls-certificates"
            throw NBDError(error.code, "nbd: \(parameter): \(error.message)")
        }
        return options
    }
}

import NBDCore

/// nbdkit's sh plugin: one executable (a shell script, or any program) run once per method call as
/// `SCRIPT METHOD ARGS...`, with nbdkit's methods, arguments, exit codes (0 ok, 1 error with an
/// errno name on stderr, 2 missing, 3 false) and `$tmpdir`.
///
/// ```swift
/// let provider = try await ShBackendProvider(parameters: ["script": "./plugin.sh", "file": "disk.img"],
///                                            options: BackendOptions())
/// ```
///
/// `script=-` reads a `/bin/sh` script from standard input. Every other parameter goes to the
/// script's `config` method.
public struct ShBackendProvider: BackendProvider {
    let provider: ScriptBackendProvider

    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> ScriptBackend {
        try await provider.open(connection)
    }

    /// Runs `preconnect`: a failure (exit 1, or 3) drops the client before the handshake.
    public func preconnect(_ connection: ConnectionInfo) async throws(NBDError) {
        try await provider.preconnect(connection)
    }

    /// The exports `list_exports` prints (names alone, interleaved with descriptions, or names then
    /// descriptions); without the method, the default export alone.
    public func listExports(_ connection: ConnectionInfo) async throws(NBDError) -> [ExportEntry] {
        try await provider.listExports(connection)
    }

    /// The name `default_export` prints for the export `""`, or `""` without the method.
    public func defaultExport(_ connection: ConnectionInfo) async throws(NBDError) -> String {
        try await provider.defaultExport(connection)
    }

    /// Runs the script's `unload` and removes `$tmpdir`.
    public func shutdown() async {
        await provider.shutdown()
    }

    /// `$tmpdir` of this server.
    public var temporaryDirectory: String { provider.host.temporaryDirectory }
}

extension ShBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "sh" }
    public static var summary: String {
        "nbdkit's sh plugin: a script or executable run as SCRIPT METHOD ARGS... for every method (sh SCRIPT [KEY=VALUE...])"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "script",
                "the executable to run, or - for a /bin/sh script read from standard input; every other KEY=VALUE goes to the script's config method, and a later plain argument too, under the key its magic_config_key prints",
                required: true)
        ]
    }
    public static var positionalParameter: String? { "script" }
    public static var example: String { "sh ./plugin.sh file=disk.img" }
    public static var acceptsUnlistedParameters: Bool { true }

    /// Starts the script: `load`, `magic_config_key`, `config KEY VALUE` for every other parameter
    /// in order, `config_complete`, `thread_model`, `get_ready`, `after_fork`.
    ///
    /// The first parameter must be `script`. A later `script` value is a plain argument: it goes to
    /// `config` under the key `magic_config_key` printed, or is refused when there is none.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        guard let first = parameters.entries.first, first.key == "script" else {
            throw NBDError(.invalidArgument, "script=... is required, and first, for example \(Self.example)")
        }
        let script = first.value
        let directory = try TemporaryDirectory(prefix: "nbd-serve-sh-")
        let path: String
        if script == "-" {
            path = "\(directory.path)/inline-script.sh"
            try ScriptFile.write(try await ScriptFile.readStandardInput(parameter: "script"), to: path)
        } else {
            path = try ScriptFile.executable(script, parameter: "script")
        }
        let host = ScriptHost(
            directory: directory, displayName: path, invocation: .script(path: path), logger: options.logger)
        try await host.expectSuccess("load")
        // A later plain argument (script=VALUE after the first) goes to config under the key the
        // script's magic_config_key prints, as `nbdkit sh example.sh disk.img` means file=disk.img.
        var magicKey: String? = nil
        if case .ok(let key) = try await host.call("magic_config_key") {
            magicKey = String(decoding: key, as: UTF8.self).droppingFinalNewline
        }
        for var entry in parameters.entries.dropFirst() {
            if entry.key == "script" {
                guard let magicKey, !magicKey.isEmpty else {
                    throw NBDError(
                        .invalidArgument,
                        "'\(entry.value)': expected KEY=VALUE (the script has no magic_config_key for a plain argument)"
                    )
                }
                entry.key = magicKey
            }
            let reply: ScriptReply
            do {
                reply = try await host.call("config", [entry.key, entry.value])
            } catch {
                throw NBDError(error.code, "\(entry.key)=\(entry.value): \(error.message)")
            }
            switch reply {
            case .ok: continue
            case .missing:
                throw NBDError(
                    .invalidArgument,
                    "\(entry.key)=\(entry.value): the script has no config method, so it takes no parameters")
            case .no:
                throw NBDError(.invalidArgument, "\(entry.key)=\(entry.value): config exited with status 3 (false)")
            }
        }
        provider = try await ScriptBackendProvider.start(host: host)
    }
}

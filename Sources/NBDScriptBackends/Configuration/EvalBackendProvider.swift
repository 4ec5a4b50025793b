import NBDCore

/// nbdkit's eval plugin: one `/bin/sh` snippet per method, given on the command line as
/// `METHOD=SCRIPT`, run with the sh plugin's arguments, exit codes and `$tmpdir`.
///
/// ```swift
/// let provider = try await EvalBackendProvider(
///     parameters: ["get_size": "echo 64M", "pread": "dd if=/dev/zero count=$3 iflag=count_bytes"],
///     options: BackendOptions())
/// ```
///
/// As in nbdkit, a `can_*` method left out answers yes when its operation has a snippet
/// (`pwrite=` implies `can_write`); `missing=` runs for every method without one; a parameter
/// that is not a method name goes to the `config=` snippet.
public struct EvalBackendProvider: BackendProvider {
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

    /// Runs the `unload=` snippet and removes `$tmpdir`.
    public func shutdown() async {
        await provider.shutdown()
    }

    /// `$tmpdir` of this server.
    public var temporaryDirectory: String { provider.host.temporaryDirectory }

    /// The methods a snippet can be given for, nbdkit's names.
    static let methods: [(name: String, summary: String)] = [
        ("get_size", "print the export size (bytes or 64M)"),
        ("pread", "print COUNT=$3 bytes from OFFSET=$4 on stdout"),
        ("pwrite", "write COUNT=$3 bytes read from stdin at OFFSET=$4 (FLAGS=$5: fua)"),
        ("flush", "make writes durable"),
        ("trim", "discard COUNT=$3 bytes at OFFSET=$4 (FLAGS=$5)"),
        (
            "zero",
            "zero COUNT=$3 bytes at OFFSET=$4 (FLAGS=$5: fua,may_trim,fast); ENOTSUP on stderr falls back to pwrite"
        ),
        ("extents", "print OFFSET LENGTH [TYPE] lines (TYPE: hole,zero or 0-3) for COUNT=$3 bytes at OFFSET=$4"),
        ("cache", "prefetch COUNT=$3 bytes at OFFSET=$4"),
        ("can_write", "exit 0 if writable, 3 if not (default: whether pwrite= is given)"),
        ("can_flush", "exit 0 or 3 (default: whether flush= is given)"),
        ("can_trim", "exit 0 or 3 (default: whether trim= is given)"),
        ("can_zero", "exit 0 or 3 (default: whether zero= is given)"),
        ("can_fast_zero", "exit 0 or 3"),
        ("can_extents", "exit 0 or 3 (default: whether extents= is given)"),
        ("can_fua", "print none, emulate or native"),
        ("can_cache", "print none, emulate or native (default: native with cache=)"),
        ("can_multi_conn", "exit 0 or 3"),
        ("is_rotational", "exit 0 or 3"),
        ("block_size", "print MINIMUM PREFERRED MAXIMUM"),
        ("thread_model", "print parallel, serialize_requests or serialize_all_requests (the default)"),
        ("open", "print the handle ($2 of later calls); $2 readonly, $3 export name"),
        ("close", "end of a connection's handle"),
        ("preconnect", "run before each connection is opened"),
        ("default_export", "print the name the export \"\" stands for"),
        ("list_exports", "print the exports NBD_OPT_LIST lists (NAMES, INTERLEAVED or NAMES+DESCRIPTIONS)"),
        ("export_description", "accepted; not sent to clients"),
        ("config", "called as config KEY VALUE for every parameter that is not a method name"),
        ("config_complete", "called after the parameters"),
        ("get_ready", "called once before serving"),
        ("after_fork", "called once before serving"),
        ("dump_plugin", "accepted; not run"),
        ("unload", "called at shutdown"),
        ("missing", "run for every method without a snippet (default: exit 2)"),
    ]

    /// Operations whose snippet answers the matching `can_*` method when it has none, and what
    /// that answer is.
    static let impliedCapabilities: [(operation: String, method: String, script: String)] = [
        ("pwrite", "can_write", "exit 0"), ("flush", "can_flush", "exit 0"), ("trim", "can_trim", "exit 0"),
        ("zero", "can_zero", "exit 0"), ("extents", "can_extents", "exit 0"), ("cache", "can_cache", "echo native"),
    ]
}

extension EvalBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "eval" }
    public static var summary: String {
        "nbdkit's eval plugin: a /bin/sh snippet per method on the command line (eval get_size='echo 64M' pread='...'); other KEY=VALUE go to config="
    }
    public static var parameters: [ParameterDescription] {
        methods.map { ParameterDescription($0.name, $0.summary, required: $0.name == "get_size") }
    }
    public static var positionalParameter: String? { nil }
    public static var example: String {
        "eval get_size='echo 64M' pread='dd if=/dev/zero count=$3 iflag=count_bytes'"
    }
    public static var acceptsUnlistedParameters: Bool { true }

    /// Writes each snippet to `$tmpdir` and calls `config` for the other parameters, in command-line
    /// order; then `config_complete`, `thread_model`, `get_ready`, `after_fork`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        let directory = try TemporaryDirectory(prefix: "nbd-serve-eval-")
        let known = Set(Self.methods.map(\.name))
        var snippets: [String: String] = [:]
        var missing: String? = nil
        func host() -> ScriptHost {
            ScriptHost(
                directory: directory, displayName: "eval", invocation: .snippets(methods: snippets, missing: missing),
                logger: options.logger)
        }
        for entry in parameters {
            if known.contains(entry.key) {
                guard snippets[entry.key] == nil && !(entry.key == "missing" && missing != nil) else {
                    throw NBDError(.invalidArgument, "\(entry.key)= is given twice: give each method once")
                }
                let path = "\(directory.path)/\(entry.key)"
                try ScriptFile.write(entry.value, to: path)
                if entry.key == "missing" { missing = path } else { snippets[entry.key] = path }
                continue
            }
            let reply: ScriptReply
            do {
                reply = try await host().call("config", [entry.key, entry.value])
            } catch {
                throw NBDError(error.code, "\(entry.key)=\(entry.value): \(error.message)")
            }
            switch reply {
            case .ok: continue
            case .missing:
                throw NBDError(
                    .invalidArgument,
                    "\(entry.key)=\(entry.value): \(entry.key) is not an eval method and there is no config= snippet to take it; run 'nbd-serve eval --help' for the methods"
                )
            case .no:
                throw NBDError(.invalidArgument, "\(entry.key)=\(entry.value): config exited with status 3 (false)")
            }
        }
        guard snippets["get_size"] != nil else {
            throw NBDError(.invalidArgument, "get_size=... is required, for example get_size='echo 64M'")
        }
        for implied in Self.impliedCapabilities
        where snippets[implied.operation] != nil && snippets[implied.method] == nil {
            let path = "\(directory.path)/\(implied.method)"
            try ScriptFile.write(implied.script, to: path)
            snippets[implied.method] = path
        }
        provider = try await ScriptBackendProvider.start(host: host())
    }
}

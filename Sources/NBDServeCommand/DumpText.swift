import NBDCore

/// What `--dump-config` and `--dump-plugin` print: `KEY=VALUE` lines as nbdkit prints them, so that
/// a script that probes nbdkit this way (does the server have TLS? does it have this backend?) can
/// probe `nbd-serve` too. Only keys that mean the same thing here are printed.
package enum DumpText {
    /// `--dump-config`: `binary` is the path the executable was run as.
    package static func config(binary: String) -> String {
        let parts = HelpText.versionNumber.split(separator: ".")
        return lines([
            ("binary", binary),
            ("exit_with_parent", "yes"),
            ("name", "nbd-serve"),
            ("root_tls_certificates_dir", "/etc/pki/nbdkit"),
            ("tls", "yes"),
            ("version", HelpText.versionNumber),
            ("version_major", parts.count > 0 ? String(parts[0]) : "0"),
            ("version_minor", parts.count > 1 ? String(parts[1]) : "0"),
        ])
    }

    /// `BACKEND --dump-plugin`, or an error naming the backends there are.
    package static func backend(_ name: String) throws(CommandLineError) -> String {
        guard let backend = ServeCatalog.backend(named: name) else { throw ServeCatalog.unknownBackend(name) }
        var pairs = [
            ("name", backend.backendName),
            ("version", HelpText.versionNumber),
            ("max_thread_model", "parallel"),
            ("thread_model", "parallel"),
        ]
        if let main = backend.positionalParameter { pairs.append(("magic_config_key", main)) }
        pairs.append(("description", backend.summary))
        return lines(pairs)
    }

    private static func lines(_ pairs: [(String, String)]) -> String {
        pairs.map { "\($0.0)=\($0.1)\n" }.joined()
    }
}

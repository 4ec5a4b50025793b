import NBDCore
import NBDServer
import NBDTLS

#if canImport(Glibc)
    import Glibc
#endif

/// Turns `--tls`, `--tls-certificates`, `--tls-psk` and `--tls-verify-peer` into the server's
/// TLS settings, with nbdkit's meanings.
package enum TLSSetup {
    /// Where nbdkit looks for certificates when `--tls-certificates` is not given: for root
    /// `/etc/pki/nbdkit`, for others `$HOME/.pki/nbdkit` first.
    package static func defaultCertificateDirectories(home: String?, isRoot: Bool) -> [String] {
        var directories: [String] = []
        if !isRoot, let home, !home.isEmpty { directories.append(home + "/.pki/nbdkit") }
        directories.append("/etc/pki/nbdkit")
        return directories
    }

    /// Sets ``NBDServer/ServerConfiguration/tls`` and ``NBDServer/ServerConfiguration/secureTransport``
    /// from `options`, loading the credentials now so that a bad file stops nbd-serve before it
    /// listens. Returns warnings for options that have no effect.
    ///
    /// - Throws: ``CommandLineError`` when TLS is asked for and the credentials cannot be loaded.
    package static func configure(
        _ configuration: inout ServerConfiguration, from options: ServeOptions
    ) throws(CommandLineError) -> [String] {
        var warnings: [String] = []
        configuration.tls = options.tls
        guard options.tls != .off else {
            for (given, name) in [
                (options.tlsCertificates != nil, "--tls-certificates"), (options.tlsPSKFile != nil, "--tls-psk"),
                (options.tlsVerifyPeer, "--tls-verify-peer"),
            ] where given {
                warnings.append(
                    "\(name) has no effect without --tls=on or --tls=require: clients are served in plaintext")
            }
            return warnings
        }
        if let file = options.tlsPSKFile {
            if options.tlsCertificates != nil {
                warnings.append("--tls-certificates is ignored: --tls-psk is given, and clients authenticate with keys")
            }
            if options.tlsVerifyPeer {
                warnings.append("--tls-verify-peer has no effect with --tls-psk: keys authenticate both sides")
            }
            configuration.secureTransport = try load { () throws(NBDError) in try TLSServerTransport(pskFile: file) }
            return warnings
        }
        let directory: String
        if let given = options.tlsCertificates {
            directory = given
        } else {
            let home = getenv("HOME").map { String(cString: $0) }
            let candidates = defaultCertificateDirectories(home: home, isRoot: geteuid() == 0)
            guard let found = candidates.first(where: { access($0 + "/server-cert.pem", R_OK) == 0 }) else {
                throw CommandLineError(
                    "--tls=\(options.tls.rawValue) needs credentials: give --tls-certificates=DIR or --tls-psk=FILE (no certificates found in \(candidates.joined(separator: " or ")))"
                )
            }
            directory = found
        }
        configuration.secureTransport = try load { () throws(NBDError) in
            try TLSServerTransport(certificatesDirectory: directory, verifyPeer: options.tlsVerifyPeer)
        }
        return warnings
    }

    private static func load(_ body: () throws(NBDError) -> TLSServerTransport) throws(CommandLineError)
        -> TLSServerTransport
    {
        do {
            return try body()
        } catch {
            throw CommandLineError(error.message)
        }
    }
}

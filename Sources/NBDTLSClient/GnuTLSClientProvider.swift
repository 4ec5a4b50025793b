import NBDClient
import NBDCore
import NBDGnuTLS

#if canImport(Glibc)
    import Glibc
#endif

/// NBDClient's TLS through GnuTLS: pass it to `NBDConnection.connect(to:exportName:configuration:tlsProvider:)`
/// (or `NBDProxyProvider`) for endpoints with TLS options, such as `nbds://` URIs.
///
/// ```swift
/// let endpoint = try NBDEndpoint(uri: "nbds+unix:///disk?socket=/run/nbd.sock&tls-certificates=/etc/pki/libnbd")
/// let connection = try await NBDConnection.connect(to: endpoint, tlsProvider: GnuTLSClientProvider())
/// ```
///
/// Credentials, as libnbd chooses them: with a PSK file, the key of `username` (default: the login
/// name); otherwise the certificates directory, by default `$HOME/.pki/libnbd` or else
/// `/etc/pki/libnbd`. Unlike libnbd, there is no fallback to the system's trusted CAs: without a
/// directory the connection fails and says which directories were looked for.
public struct GnuTLSClientProvider: ClientTLSProvider {
    /// The GnuTLS priority string.
    public let priority: String

    /// Creates the provider; `priority` is GnuTLS's priority string (default `"NORMAL"`).
    public init(priority: String = "NORMAL") {
        self.priority = priority
    }

    /// Loads the credentials `options` name and runs the TLS handshake on `descriptor`.
    public func startSession(descriptor: Int32, options: ClientTLSOptions, hostname: String?, timeout: Duration?)
        throws(NBDError) -> any ClientTLSSession
    {
        try TLSSession.client(
            descriptor: descriptor, credentials: try credentials(for: options),
            hostname: options.verifyPeer ? hostname : nil, timeout: timeout)
    }

    /// The credentials `options` name (loaded from their files).
    public func credentials(for options: ClientTLSOptions) throws(NBDError) -> TLSClientCredentials {
        if let pskFile = options.pskFile {
            var username = options.username
            if username == nil { username = try Self.loginName() }
            return try TLSClientCredentials(pskFile: pskFile, username: username!, priority: priority)
        }
        var directory = options.certificatesDirectory
        if directory == nil { directory = try Self.defaultCertificatesDirectory() }
        return try TLSClientCredentials(
            certificatesDirectory: directory!, verifyPeer: options.verifyPeer, priority: priority)
    }

    /// libnbd's default user name for a pre-shared key: the login name.
    static func loginName() throws(NBDError) -> String {
        if let entry = getpwuid(getuid()), let name = entry.pointee.pw_name { return String(cString: name) }
        if let name = getenv("USER") { return String(cString: name) }
        throw NBDError(.invalidArgument, "cannot find the login name for the TLS pre-shared key; give tls-username=")
    }

    /// libnbd's default certificate directories, in order.
    static func defaultCertificatesDirectory() throws(NBDError) -> String {
        var candidates: [String] = []
        if let home = getenv("HOME") { candidates.append(String(cString: home) + "/.pki/libnbd") }
        candidates.append("/etc/pki/libnbd")
        for directory in candidates where access(directory + "/ca-cert.pem", R_OK) == 0 {
            return directory
        }
        throw NBDError(
            .invalidArgument,
            "TLS needs certificates or a pre-shared key: give tls-certificates=DIR or tls-psk-file=FILE (no ca-cert.pem in \(candidates.joined(separator: " or ")))"
        )
    }
}

extension TLSSession: ClientTLSSession {}

import NBDCore
import NBDGnuTLS
import NBDServer

/// The GnuTLS implementation of `NBDServer.SecureTransport`: X.509 certificates or pre-shared
/// keys, with nbdkit's file layouts and defaults.
///
/// ```swift
/// var configuration = ServerConfiguration()
/// configuration.tls = .require
/// configuration.secureTransport = try TLSServerTransport(certificatesDirectory: "/etc/pki/nbd-serve")
/// // or: try TLSServerTransport(pskFile: "/etc/nbd-serve/keys.psk")
/// ```
///
/// The credentials are loaded once, here, so a missing or unreadable file is reported before the
/// server listens. See `Documentation/TLS.md` for making certificates and key files.
public struct TLSServerTransport: SecureTransport {
    /// GnuTLS's default priority string, as nbdkit uses.
    public static let defaultPriority = "NORMAL"

    private let credentials: GnuTLSCredentials
    private let priority: String
    private let verifyPeer: Bool

    /// X.509: `directory` holds `ca-cert.pem`, `server-cert.pem`, `server-key.pem` and optionally
    /// `ca-crl.pem` (nbdkit's `--tls-certificates`).
    ///
    /// - Parameters:
    ///   - directory: The folder with the PEM files.
    ///   - verifyPeer: Whether clients must present a certificate signed by `ca-cert.pem`
    ///     (nbdkit's `--tls-verify-peer`).
    ///   - priority: The GnuTLS priority string.
    /// - Throws: `NBDError` naming the file that is missing or cannot be loaded.
    public init(certificatesDirectory directory: String, verifyPeer: Bool = false, priority: String = defaultPriority)
        throws(NBDError)
    {
        credentials = try GnuTLSCredentials.server(certificatesDirectory: directory)
        self.priority = priority
        self.verifyPeer = verifyPeer
    }

    /// Pre-shared keys: `file` holds `username:hexkey` lines as `psktool` writes them (nbdkit's
    /// `--tls-psk`). A client proves it knows the key of its username.
    ///
    /// - Throws: `NBDError` when the file cannot be read or has a malformed line.
    public init(pskFile file: String, priority: String = defaultPriority) throws(NBDError) {
        credentials = try GnuTLSCredentials.server(pskFile: file)
        self.priority = priority
        self.verifyPeer = false
    }

    /// Runs the server side of the TLS handshake; see `NBDServer.SecureTransport`.
    public func startServerSession(
        descriptor: Int32, timeout: Duration?, reportProblem: @escaping @Sendable (String) -> Void
    ) throws(NBDError) -> any SecureSession {
        try TLSSession.server(
            descriptor: descriptor, credentials: credentials, priority: priority, verifyPeer: verifyPeer,
            timeout: timeout, reportProblem: reportProblem)
    }
}

import NBDCore

/// What a client needs to start TLS with an NBD server: the CA to trust (and a client certificate
/// for servers that verify their clients), or a pre-shared key. libnbd's `tls-certificates`,
/// `tls-verify-peer`, `tls-psk-file` and `tls-username`.
///
/// ```swift
/// let credentials = try TLSClientCredentials(certificatesDirectory: "/home/me/.pki/libnbd")
/// let session = try TLSSession.client(descriptor: fd, credentials: credentials)
/// ```
public struct TLSClientCredentials: Sendable {
    let credentials: GnuTLSCredentials
    /// Whether the server's certificate must be signed by the trusted CA (always true for keys,
    /// which authenticate both sides).
    public let verifiesPeer: Bool
    /// The GnuTLS priority string.
    public let priority: String

    /// X.509: `directory` holds `ca-cert.pem` and, optionally, `client-cert.pem` and
    /// `client-key.pem`.
    public init(certificatesDirectory directory: String, verifyPeer: Bool = true, priority: String = "NORMAL")
        throws(NBDError)
    {
        credentials = try GnuTLSCredentials.client(certificatesDirectory: directory)
        verifiesPeer = verifyPeer
        self.priority = priority
    }

    /// A pre-shared key: `username`'s line of `file` (`username:hexkey` lines, as `psktool` writes).
    public init(pskFile file: String, username: String, priority: String = "NORMAL") throws(NBDError) {
        credentials = try GnuTLSCredentials.client(pskFile: file, username: username)
        verifiesPeer = true
        self.priority = priority
    }
}

import NBDCore

/// Whether a client connection uses TLS: libnbd's `nbd_set_tls` levels and nbdkit's nbd-plugin
/// `tls=off|on|require`.
public enum ClientTLSMode: String, Sendable, Hashable {
    /// Plaintext only; `NBD_OPT_STARTTLS` is never sent.
    case off
    /// Try `NBD_OPT_STARTTLS`; fall back to plaintext when the server answers
    /// `NBD_REP_ERR_UNSUP` or `NBD_REP_ERR_POLICY` (libnbd's "allow").
    case on
    /// TLS or no connection: a server that refuses `NBD_OPT_STARTTLS` is an error.
    case require
}

/// How a client starts TLS: the mode and the credentials, as plain values (file names, not loaded
/// keys), so an ``NBDEndpoint`` parsed from an `nbds://` URI can carry them. A
/// ``ClientTLSProvider`` (NBDTLSClient's `GnuTLSClientProvider`) turns them into a session.
public struct ClientTLSOptions: Sendable, Hashable {
    /// Off, on (fall back to plaintext) or require.
    public var mode: ClientTLSMode
    /// A directory with `ca-cert.pem` and optionally `client-cert.pem` and `client-key.pem`
    /// (libnbd's `tls-certificates`); `nil` uses the provider's default locations.
    public var certificatesDirectory: String?
    /// A `username:hexkey` file, as `psktool` writes (libnbd's `tls-psk-file`); when set, a
    /// pre-shared key is used instead of certificates.
    public var pskFile: String?
    /// The key's user name in ``pskFile`` (libnbd's `tls-username`); `nil` is the login name.
    public var username: String?
    /// Whether the server's certificate must be signed by the trusted CA and carry the host name
    /// (libnbd's `tls-verify-peer`, default `true`).
    public var verifyPeer: Bool

    /// Creates TLS options.
    public init(
        mode: ClientTLSMode = .require, certificatesDirectory: String? = nil, pskFile: String? = nil,
        username: String? = nil, verifyPeer: Bool = true
    ) {
        self.mode = mode
        self.certificatesDirectory = certificatesDirectory
        self.pskFile = pskFile
        self.username = username
        self.verifyPeer = verifyPeer
    }
}

/// Upgrades a connected socket to TLS after the server accepted `NBD_OPT_STARTTLS`. NBDClient does
/// not link a TLS library; NBDTLSClient's `GnuTLSClientProvider` implements this with GnuTLS.
public protocol ClientTLSProvider: Sendable {
    /// Runs the client side of the TLS handshake on `descriptor`, a connected blocking socket.
    ///
    /// - Parameters:
    ///   - descriptor: The socket; the session reads and writes it from now on, and the caller
    ///     keeps owning (and eventually closes) it.
    ///   - options: The credentials to use.
    ///   - hostname: The TCP host name the server's certificate must carry, or `nil` (Unix socket).
    ///   - timeout: How long the handshake may take, or `nil`.
    /// - Throws: `NBDError` when the credentials cannot be loaded or the handshake fails.
    func startSession(descriptor: Int32, options: ClientTLSOptions, hostname: String?, timeout: Duration?)
        throws(NBDError) -> any ClientTLSSession
}

/// An established client TLS session: the connection's bytes go through it after the handshake.
/// One thread may receive while another sends.
public protocol ClientTLSSession: AnyObject, Sendable {
    /// Receives up to `buffer.count` decrypted bytes, blocking; 0 at the end of the session, -1 on
    /// an error.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int
    /// Encrypts and sends all of `bytes`; `false` if the session failed.
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool
    /// Sends TLS `close_notify` once, without waiting for the peer's.
    func close()
}

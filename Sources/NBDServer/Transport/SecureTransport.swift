import NBDCore

/// Upgrades a connection's socket to a ``SecureSession`` when the client asks with
/// `NBD_OPT_STARTTLS`: the seam between ``NBDServer`` and a TLS implementation.
///
/// `NBDServer` itself links no TLS library. The `NBDTLS` module provides `TLSServerTransport`, which
/// runs GnuTLS; set it as ``ServerConfiguration/secureTransport`` together with
/// ``ServerConfiguration/tls``:
///
/// ```swift
/// var configuration = ServerConfiguration()
/// configuration.tls = .require
/// configuration.secureTransport = try TLSServerTransport(certificatesDirectory: "/etc/pki/nbd-serve")
/// ```
///
/// Plaintext connections never touch the transport: their reads and writes are plain `recv` and
/// `send` calls, exactly as without TLS.
public protocol SecureTransport: Sendable {
    /// Runs the server side of the handshake on `descriptor` (a connected, blocking stream socket on
    /// which the client is about to start the handshake) and returns the established session.
    ///
    /// - Parameters:
    ///   - descriptor: The connection's socket. The session reads and writes it directly; the
    ///     server closes it after the session.
    ///   - timeout: How long the whole handshake may take, or `nil` for no limit.
    ///   - reportProblem: Where the session reports, later, a problem an operator should see (a
    ///     client that sent plaintext after the handshake); the server prefixes the connection.
    /// - Throws: `NBDError` with a message an operator can act on (a wrong key, a client
    ///   certificate from an unknown authority, a client that does not speak TLS).
    func startServerSession(
        descriptor: Int32, timeout: Duration?, reportProblem: @escaping @Sendable (String) -> Void
    ) throws(NBDError) -> any SecureSession
}

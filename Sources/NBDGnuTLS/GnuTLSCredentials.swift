import CGnuTLS
import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// Loaded GnuTLS credentials (certificates or pre-shared keys), shared by every session made from
/// them and freed after the last one.
package final class GnuTLSCredentials: @unchecked Sendable {
    // @unchecked Sendable: GnuTLS credentials are read-only once loaded and may be used by many
    // sessions on many threads at once.

    enum Kind {
        case certificates(OpaquePointer)
        case serverKeys(OpaquePointer)
        case clientKey(OpaquePointer)
    }

    let kind: Kind
    /// What an operator should check when a handshake fails, such as the files in use.
    let hint: String

    private init(kind: Kind, hint: String) {
        self.kind = kind
        self.hint = hint
    }

    deinit {
        switch kind {
        case .certificates(let handle): gnutls_certificate_free_credentials(handle)
        case .serverKeys(let handle): gnutls_psk_free_server_credentials(handle)
        case .clientKey(let handle): gnutls_psk_free_client_credentials(handle)
        }
    }

    /// The credentials type GnuTLS sessions are given these as.
    var type: gnutls_credentials_type_t {
        if case .certificates = kind { return GNUTLS_CRD_CERTIFICATE }
        return GNUTLS_CRD_PSK
    }

    var handle: OpaquePointer {
        switch kind {
        case .certificates(let handle), .serverKeys(let handle), .clientKey(let handle): return handle
        }
    }

    var isPSK: Bool {
        if case .certificates = kind { return false }
        return true
    }

    /// Turns a GnuTLS result into an error naming what was being done.
    static func check(_ result: Int32, _ what: @autoclosure () -> String) throws(NBDError) {
        guard result >= 0 else { throw NBDError(.invalidArgument, "\(what()): \(describe(result))") }
    }

    /// GnuTLS's text for an error code.
    static func describe(_ code: Int32) -> String {
        guard let text = gnutls_strerror(code) else { return "GnuTLS error \(code)" }
        return String(cString: text)
    }

    static func isReadable(_ path: String) -> Bool {
        access(path, R_OK) == 0
    }

    /// The X.509 credentials of a server: `ca-cert.pem` (the authority client certificates must
    /// be signed by), `server-cert.pem`, `server-key.pem`, and `ca-crl.pem` if present.
    package static func server(certificatesDirectory directory: String) throws(NBDError) -> GnuTLSCredentials {
        let caCertificate = directory + "/ca-cert.pem"
        let certificate = directory + "/server-cert.pem"
        let key = directory + "/server-key.pem"
        let revocations = directory + "/ca-crl.pem"
        for file in [caCertificate, certificate, key] where !isReadable(file) {
            throw NBDError(
                .invalidArgument,
                "TLS certificates directory '\(directory)': cannot read \(file) (the directory needs ca-cert.pem, server-cert.pem and server-key.pem)"
            )
        }
        var handle: OpaquePointer?
        try check(gnutls_certificate_allocate_credentials(&handle), "cannot allocate TLS credentials")
        guard let handle else { throw NBDError(.outOfMemory, "cannot allocate TLS credentials") }
        let credentials = GnuTLSCredentials(
            kind: .certificates(handle),
            hint: "check that the client trusts the authority that signed \(certificate)")
        // Returns the number of certificates loaded; 0 means the file held none.
        let trusted = gnutls_certificate_set_x509_trust_file(handle, caCertificate, GNUTLS_X509_FMT_PEM)
        try check(trusted, "cannot load the CA certificate \(caCertificate)")
        if trusted == 0 {
            throw NBDError(
                .invalidArgument, "cannot load the CA certificate \(caCertificate): it holds no PEM certificate")
        }
        if isReadable(revocations) {
            try check(
                gnutls_certificate_set_x509_crl_file(handle, revocations, GNUTLS_X509_FMT_PEM),
                "cannot load the certificate revocation list \(revocations)")
        }
        try check(
            gnutls_certificate_set_x509_key_file(handle, certificate, key, GNUTLS_X509_FMT_PEM),
            "cannot load the server certificate \(certificate) with its key \(key)")
        try check(
            gnutls_certificate_set_known_dh_params(handle, GNUTLS_SEC_PARAM_MEDIUM),
            "cannot set Diffie-Hellman parameters")
        return credentials
    }

    /// The X.509 credentials of a client: `ca-cert.pem` (the authority the server's certificate must
    /// be signed by) and, if present, `client-cert.pem` with `client-key.pem` for servers that
    /// verify their clients.
    static func client(certificatesDirectory directory: String) throws(NBDError) -> GnuTLSCredentials {
        let caCertificate = directory + "/ca-cert.pem"
        let certificate = directory + "/client-cert.pem"
        let key = directory + "/client-key.pem"
        guard isReadable(caCertificate) else {
            throw NBDError(.invalidArgument, "TLS certificates directory '\(directory)': cannot read \(caCertificate)")
        }
        var handle: OpaquePointer?
        try check(gnutls_certificate_allocate_credentials(&handle), "cannot allocate TLS credentials")
        guard let handle else { throw NBDError(.outOfMemory, "cannot allocate TLS credentials") }
        let credentials = GnuTLSCredentials(
            kind: .certificates(handle),
            hint: "check that \(caCertificate) is the authority that signed the server's certificate")
        try check(
            gnutls_certificate_set_x509_trust_file(handle, caCertificate, GNUTLS_X509_FMT_PEM),
            "cannot load the CA certificate \(caCertificate)")
        if isReadable(certificate) && isReadable(key) {
            try check(
                gnutls_certificate_set_x509_key_file(handle, certificate, key, GNUTLS_X509_FMT_PEM),
                "cannot load the client certificate \(certificate) with its key \(key)")
        }
        return credentials
    }

    /// The pre-shared keys of a server: a file of `username:hexkey` lines, as `psktool` writes.
    package static func server(pskFile file: String) throws(NBDError) -> GnuTLSCredentials {
        _ = try PSKFile(path: file)
        var handle: OpaquePointer?
        try check(gnutls_psk_allocate_server_credentials(&handle), "cannot allocate TLS PSK credentials")
        guard let handle else { throw NBDError(.outOfMemory, "cannot allocate TLS PSK credentials") }
        let credentials = GnuTLSCredentials(
            kind: .serverKeys(handle), hint: "check that the client uses a username and key listed in \(file)")
        // GnuTLS looks the client's username up in the file at each handshake, so keys can be
        // added or revoked without restarting the server.
        try check(gnutls_psk_set_server_credentials_file(handle, file), "cannot use the PSK file \(file)")
        try check(
            gnutls_psk_set_server_known_dh_params(handle, GNUTLS_SEC_PARAM_MEDIUM),
            "cannot set Diffie-Hellman parameters")
        return credentials
    }

    /// The pre-shared key of a client: `username`'s line of a `psktool` file.
    static func client(pskFile file: String, username: String) throws(NBDError) -> GnuTLSCredentials {
        let keys = try PSKFile(path: file)
        guard let key = keys.entries.first(where: { $0.username == username })?.hexKey else {
            throw NBDError(.invalidArgument, "the PSK file \(file) has no key for the username '\(username)'")
        }
        var handle: OpaquePointer?
        try check(gnutls_psk_allocate_client_credentials(&handle), "cannot allocate TLS PSK credentials")
        guard let handle else { throw NBDError(.outOfMemory, "cannot allocate TLS PSK credentials") }
        let credentials = GnuTLSCredentials(
            kind: .clientKey(handle), hint: "check that the server's PSK file has the key of '\(username)' from \(file)"
        )
        var hex = Array(key.utf8)
        let result = hex.withUnsafeMutableBytes { bytes in
            var datum = gnutls_datum_t(
                data: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), size: UInt32(bytes.count))
            return gnutls_psk_set_client_credentials(handle, username, &datum, GNUTLS_PSK_KEY_HEX)
        }
        try check(result, "cannot use the key of '\(username)' from \(file)")
        return credentials
    }
}

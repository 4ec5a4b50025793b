import CGnuTLS
import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One GnuTLS session over a connected, blocking stream socket: the server side of a connection
/// after `NBD_OPT_STARTTLS` (made by NBDTLS's `TLSServerTransport`), or the client side
/// (``client(descriptor:credentials:hostname:timeout:)``).
///
/// Records are encrypted straight from the caller's buffer and decrypted straight into it. One
/// thread may send while another receives (GnuTLS allows this); two concurrent senders are not
/// allowed, and the server never has them (its `CombiningWriter` sends from one thread at a time).
///
/// Receiving reads ahead: one `recv` takes in every record that has arrived (up to 64 KiB), where
/// GnuTLS on its own reads each record's header and body with a `recv` each; and one
/// ``receive(into:)`` returns the plaintext of every complete record already received, so a server
/// sees all the requests a client sent together at once and answers them in one batch.
public final class TLSSession: @unchecked Sendable {
    // @unchecked Sendable: the session handle is used by at most one sender and one receiver at a
    // time, which GnuTLS supports; `closed` is atomic; `inbound` and `deferredResult` belong to the
    // receiving thread.

    private let session: OpaquePointer
    /// Kept alive as long as the session uses them.
    private let credentials: GnuTLSCredentials
    private let reportProblem: (@Sendable (String) -> Void)?
    private let closed = Atomic<Bool>(false)
    /// The name the server's certificate must carry, as a C string GnuTLS keeps a pointer to:
    /// `gnutls_session_set_verify_cert` does not copy it, so it must live as long as the session.
    private let expectedHostname: UnsafeMutablePointer<CChar>?
    /// The receive-side read-ahead GnuTLS pulls from (see the C shim).
    private let inbound: UnsafeMutablePointer<nbd_gnutls_inbound>
    /// The send side GnuTLS pushes through: whether a full socket waits (see the C shim).
    private let outbound: UnsafeMutablePointer<nbd_gnutls_outbound>
    /// What ended a receive that had already returned data (end of stream or an error), reported by
    /// the next ``receive(into:)``.
    private var deferredResult: Int?

    /// How much one `recv` may take in ahead of what GnuTLS asked for.
    static var readAheadCapacity: Int { 64 << 10 }

    private init(
        session: OpaquePointer, descriptor: Int32, credentials: GnuTLSCredentials,
        reportProblem: (@Sendable (String) -> Void)?, expectedHostname: String?
    ) {
        self.session = session
        self.credentials = credentials
        self.reportProblem = reportProblem
        self.expectedHostname = expectedHostname.flatMap { strdup($0) }
        let capacity = Self.readAheadCapacity
        inbound = .allocate(capacity: 1)
        inbound.initialize(
            to: nbd_gnutls_inbound(
                session: session, descriptor: descriptor, may_block: 1,
                buffer: UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
                    .assumingMemoryBound(to: UInt8.self),
                capacity: capacity, start: 0, end: 0))
        outbound = .allocate(capacity: 1)
        outbound.initialize(to: nbd_gnutls_outbound(session: session, descriptor: descriptor, may_block: 1))
        nbd_gnutls_transport_set_buffered(session, inbound, outbound)
    }

    deinit {
        gnutls_deinit(session)
        free(expectedHostname)
        UnsafeMutableRawPointer(inbound.pointee.buffer).deallocate()
        inbound.deallocate()
        outbound.deallocate()
    }

    /// The server side: runs the handshake on `descriptor` with `credentials`.
    package static func server(
        descriptor: Int32, credentials: GnuTLSCredentials, priority: String, verifyPeer: Bool, timeout: Duration?,
        reportProblem: @escaping @Sendable (String) -> Void
    ) throws(NBDError) -> TLSSession {
        let tls = try make(
            flags: UInt32(GNUTLS_SERVER), descriptor: descriptor, credentials: credentials, priority: priority,
            timeout: timeout, reportProblem: reportProblem)
        if !credentials.isPSK {
            // With --tls-verify-peer a client must present a certificate (the handshake fails
            // without one), and it is checked against the CA below.
            gnutls_certificate_server_set_request(tls.session, verifyPeer ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_IGNORE)
        }
        try tls.handshake(side: "client")
        if verifyPeer && !credentials.isPSK {
            var status: UInt32 = 0
            let result = gnutls_certificate_verify_peers2(tls.session, &status)
            if result < 0 {
                throw NBDError(
                    .notPermitted,
                    "the client's certificate could not be verified (--tls-verify-peer): \(GnuTLSCredentials.describe(result))"
                )
            }
            if status != 0 {
                throw NBDError(
                    .notPermitted,
                    "refused the client's certificate (--tls-verify-peer): \(describe(status: status)); client certificates must be signed by the CA in ca-cert.pem"
                )
            }
        }
        return tls
    }

    /// Runs the client side of a TLS handshake on `descriptor`, a connected blocking socket on which
    /// the server just acknowledged `NBD_OPT_STARTTLS`.
    ///
    /// - Parameters:
    ///   - descriptor: The connected socket; the session reads and writes it from now on.
    ///   - credentials: The CA to trust (and client certificate to present), or a pre-shared key.
    ///   - hostname: The name the server's certificate must carry, or `nil` to check only that the
    ///     certificate is signed by the trusted CA. Ignored with a pre-shared key.
    ///   - timeout: How long the handshake may take, or `nil` for no limit.
    /// - Throws: `NBDError` when the handshake fails or the server's certificate is not
    ///   trusted (with ``TLSClientCredentials/verifiesPeer``).
    public static func client(
        descriptor: Int32, credentials: TLSClientCredentials, hostname: String? = nil, timeout: Duration? = nil
    ) throws(NBDError) -> TLSSession {
        let tls = try make(
            flags: UInt32(GNUTLS_CLIENT), descriptor: descriptor, credentials: credentials.credentials,
            priority: credentials.priority, timeout: timeout, reportProblem: nil, expectedHostname: hostname)
        if !credentials.credentials.isPSK && credentials.verifiesPeer {
            // GnuTLS then verifies the chain (and the name, when given) during the handshake; it
            // keeps the name's pointer, so it gets the session's own copy.
            gnutls_session_set_verify_cert(tls.session, tls.expectedHostname, 0)
        }
        if let hostname, !credentials.credentials.isPSK {
            _ = gnutls_server_name_set(tls.session, GNUTLS_NAME_DNS, hostname, hostname.utf8.count)
        }
        try tls.handshake(side: "server")
        return tls
    }

    private static func make(
        flags: UInt32, descriptor: Int32, credentials: GnuTLSCredentials, priority: String, timeout: Duration?,
        reportProblem: (@Sendable (String) -> Void)?, expectedHostname: String? = nil
    ) throws(NBDError) -> TLSSession {
        var handle: OpaquePointer?
        try GnuTLSCredentials.check(gnutls_init(&handle, flags), "cannot create a TLS session")
        guard let handle else { throw NBDError(.outOfMemory, "cannot create a TLS session") }
        let tls = TLSSession(
            session: handle, descriptor: descriptor, credentials: credentials, reportProblem: reportProblem,
            expectedHostname: expectedHostname)
        // Pre-shared keys need the PSK key exchanges, which "NORMAL" leaves out of TLS 1.2.
        let fullPriority = credentials.isPSK ? priority + ":+ECDHE-PSK:+DHE-PSK:+PSK" : priority
        var errorPosition: UnsafePointer<CChar>?
        let priorityResult = gnutls_priority_set_direct(handle, fullPriority, &errorPosition)
        if priorityResult < 0 {
            let rest = errorPosition.map { String(cString: $0) } ?? ""
            throw NBDError(
                .invalidArgument,
                "TLS priority '\(fullPriority)' is invalid at '\(rest)': \(GnuTLSCredentials.describe(priorityResult))")
        }
        try GnuTLSCredentials.check(
            gnutls_credentials_set(handle, credentials.type, UnsafeMutableRawPointer(credentials.handle)),
            "cannot use the TLS credentials")
        if let timeout {
            let (seconds, attoseconds) = timeout.components
            let milliseconds = max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
            gnutls_handshake_set_timeout(handle, UInt32(clamping: milliseconds))
        }
        return tls
    }

    private func handshake(side peer: String) throws(NBDError) {
        while true {
            let result = gnutls_handshake(session)
            if result >= 0 { return }
            // A receive timeout on the socket (SO_RCVTIMEO) shows up as GNUTLS_E_AGAIN: the peer is
            // silent, give up. Interruptions and warning alerts are retried.
            if result == GNUTLS_E_INTERRUPTED || (result != GNUTLS_E_AGAIN && gnutls_error_is_fatal(result) == 0) {
                continue
            }
            let reason: String
            switch result {
            case GNUTLS_E_AGAIN, GNUTLS_E_TIMEDOUT:
                reason = "the \(peer) did not complete the TLS handshake in time"
            case GNUTLS_E_UNEXPECTED_PACKET_LENGTH, GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
                reason = "the \(peer) does not speak TLS (\(GnuTLSCredentials.describe(result)))"
            case GNUTLS_E_CERTIFICATE_REQUIRED where peer == "client",
                GNUTLS_E_NO_CERTIFICATE_FOUND where peer == "client":
                // GnuTLS clients offer only a certificate signed by a CA the server names, so a
                // certificate from another CA arrives as none at all.
                reason =
                    "the client presented no certificate signed by the CA in ca-cert.pem, which --tls-verify-peer requires (\(GnuTLSCredentials.describe(result)))"
            default:
                var text = GnuTLSCredentials.describe(result)
                if result == GNUTLS_E_FATAL_ALERT_RECEIVED {
                    if let name = gnutls_alert_get_name(gnutls_alert_get(session)) {
                        text += " (\(String(cString: name)))"
                    }
                }
                reason = "\(text); \(credentials.hint)"
            }
            throw NBDError(.notPermitted, "TLS handshake with the \(peer) failed: \(reason)")
        }
    }

    private static func describe(status: UInt32) -> String {
        var datum = gnutls_datum_t()
        guard gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &datum, 0) >= 0,
            let data = datum.data
        else { return "verification status 0x\(String(status, radix: 16))" }
        defer { nbd_gnutls_free(data) }
        return String(cString: UnsafeRawPointer(data).assumingMemoryBound(to: CChar.self))
    }

    /// Receives up to `buffer.count` decrypted bytes; 0 at the end of the session, -1 on an error.
    ///
    /// Waits for the first record, then adds the plaintext of every further record that has
    /// already arrived, without waiting again.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        var total = receiveWaiting(into: base, count: buffer.count)
        guard total > 0 else { return total }
        inbound.pointee.may_block = 0
        defer { inbound.pointee.may_block = 1 }
        while total < buffer.count
            && (inbound.pointee.start < inbound.pointee.end || gnutls_record_check_pending(session) > 0)
        {
            let result = gnutls_record_recv(session, base + total, buffer.count - total)
            if result > 0 {
                total += result
                continue
            }
            let code = Int32(truncatingIfNeeded: result)
            if code == GNUTLS_E_AGAIN {
                // Only part of a record has arrived; the next call waits for the rest.
                break
            }
            if code == GNUTLS_E_INTERRUPTED || code == GNUTLS_E_REHANDSHAKE || code == GNUTLS_E_WARNING_ALERT_RECEIVED {
                continue
            }
            // The end of the session or an error, after data this call returns: the next call
            // reports it.
            deferredResult = result
            break
        }
        return total
    }

    /// Receives at least one byte, waiting for it; 0 at the end of the session, -1 on an error.
    private func receiveWaiting(into base: UnsafeMutableRawPointer, count: Int) -> Int {
        while true {
            let result: Int
            if let deferred = deferredResult {
                deferredResult = nil
                result = deferred
            } else {
                result = gnutls_record_recv(session, base, count)
            }
            if result >= 0 { return result }
            let code = Int32(truncatingIfNeeded: result)
            switch code {
            case GNUTLS_E_INTERRUPTED:
                continue
            case GNUTLS_E_REHANDSHAKE, GNUTLS_E_WARNING_ALERT_RECEIVED:
                // Not supported mid-connection; the peer gets no renegotiation. Keep reading.
                continue
            case GNUTLS_E_PREMATURE_TERMINATION:
                // The peer closed the socket without close_notify: a client that went away.
                return 0
            case GNUTLS_E_AGAIN:
                // The socket's receive timeout (during option haggling) expired.
                return -1
            default:
                reportProblem?(
                    "closing the TLS connection: \(GnuTLSCredentials.describe(code)) (the client sent something that is not a valid TLS record, such as plaintext after the TLS handshake)"
                )
                return -1
            }
        }
    }

    /// Encrypts and sends all of `bytes`, one record at a time, straight from the buffer.
    ///
    /// After ``sendWithoutWaiting(_:)`` took only part of a buffer, the rest must come here next,
    /// from the same memory: GnuTLS then first sends the record it kept back.
    public func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        return sendRecords(from: base, count: bytes.count) == bytes.count
    }

    /// Encrypts and sends records of `bytes` while the socket takes them without waiting, and
    /// returns how many bytes were sent; `nil` if the session failed.
    ///
    /// When the socket is full, GnuTLS keeps the record it just encrypted; the rest of `bytes`
    /// (from the returned count on, same memory) must then go to ``send(_:)`` before anything else
    /// is sent, and that call sends the kept record first.
    public func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress else { return 0 }
        outbound.pointee.may_block = 0
        defer { outbound.pointee.may_block = 1 }
        return sendRecords(from: base, count: bytes.count)
    }

    /// Sends records until `count` bytes are sent or, without blocking, the socket is full. Returns
    /// the bytes sent, or `nil` on a failure.
    private func sendRecords(from base: UnsafeRawPointer, count: Int) -> Int? {
        var sent = 0
        while sent < count {
            let result = gnutls_record_send(session, base + sent, count - sent)
            if result < 0 {
                let code = Int32(truncatingIfNeeded: result)
                if code == GNUTLS_E_INTERRUPTED { continue }
                if code == GNUTLS_E_AGAIN {
                    // A full socket while not waiting: the record stays with GnuTLS, and the next
                    // call with the same data sends it. (A blocking push never reports AGAIN.)
                    if outbound.pointee.may_block == 0 { return sent }
                    continue
                }
                return nil
            }
            sent += result
        }
        return sent
    }

    /// Sends TLS `close_notify` once; does not wait for the peer's.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = gnutls_bye(session, GNUTLS_SHUT_WR)
    }
}

import NBDWire

/// An encrypted session over a connection's socket, such as a TLS session: what the connection
/// reads and writes once `NBD_OPT_STARTTLS` succeeded.
///
/// The connection thread calls ``receive(into:)``; replies are sent by one thread at a time (the
/// connection thread or a slow-operation thread, never two at once), possibly while a `receive`
/// blocks on the connection thread. An implementation must allow that one sender and one receiver
/// work at the same time (GnuTLS does).
public protocol SecureSession: AnyObject, Sendable {
    /// Receives up to `buffer.count` decrypted bytes, blocking. Returns 0 at end of stream and -1
    /// on an error (including data that is not a valid record, such as plaintext sent after the
    /// handshake), after which the connection is closed.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int

    /// Encrypts and sends all of `bytes`. Returns `false` if the peer went away or the session
    /// failed.
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool

    /// Encrypts and sends a leading part of `bytes`, as much as the socket takes without waiting,
    /// and returns its length; `nil` if the peer went away or the session failed.
    ///
    /// The server calls it to start a large reply and prepares the next one while the client drains
    /// the socket; it then passes the rest (from the returned length on, the same memory) to
    /// ``send(_:)`` before sending anything else. The default sends everything with ``send(_:)``.
    func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> Int?

    /// Tells the peer the session ends (TLS `close_notify`), without waiting for its answer. Called
    /// once, when the connection closes.
    func close()
}

extension SecureSession {
    /// Sends all of `bytes`, waiting as needed: a session that cannot stop at a full socket.
    public func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> Int? {
        send(bytes) ? bytes.count : nil
    }
}

/// A ``SecureSession`` as the wire layer's socket sees it.
final class SecureSessionAdapter: WireSession {
    private let session: any SecureSession

    init(_ session: any SecureSession) {
        self.session = session
    }

    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int { session.receive(into: buffer) }
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool { session.send(bytes) }
    func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> Int? { session.sendWithoutWaiting(bytes) }
    func close() { session.close() }
}

/// An encrypted session a ``Socket`` reads and writes through, such as a TLS session: the shape both
/// NBDServer's public `SecureSession` and NBDClient's public `ClientTLSSession` have, so that one
/// socket type serves both sides. Each side wraps its public protocol in a small adapter.
package protocol WireSession: AnyObject, Sendable {
    /// Receives up to `buffer.count` decrypted bytes, blocking: 0 at end of stream, -1 on an error.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int
    /// Encrypts and sends all of `bytes`; `false` if the peer went away or the session failed.
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool
    /// Sends a leading part of `bytes`, as much as the socket takes without waiting, and returns its
    /// length; `nil` if the session failed.
    func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> Int?
    /// Tells the peer the session ends (TLS `close_notify`), without waiting for its answer.
    func close()
}

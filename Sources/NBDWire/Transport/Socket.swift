import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A connected stream socket that closes itself when the last reference goes away.
///
/// `send` and `recv` block; they are called only from threads the server owns. `shutdownReading()`
/// may be called from any thread to wake a blocked `recv` (used by server shutdown).
///
/// A socket may instead be backed by a ``MemoryTransport`` (no descriptor), so the fuzz targets can
/// drive the real handshake and request loop without the kernel; or by a ``WireSession`` (TLS)
/// over another socket's descriptor, after `NBD_OPT_STARTTLS`.
package final class Socket: Sendable {
    /// Where the bytes go. A plaintext socket is `.kernel`: its `receive` and `send` test one enum
    /// tag and make the syscall, with no dynamic dispatch.
    private enum Peer: Sendable {
        case kernel
        case memory(MemoryTransport)
        /// The session, and the plaintext socket whose descriptor it uses (kept alive, and closed by
        /// it, not by this object).
        case secure(any WireSession, over: Socket)
    }

    /// The file descriptor; valid for the life of the object. -1 for an in-memory socket.
    package let descriptor: Int32
    private let peer: Peer

    package init(adopting descriptor: Int32) {
        self.descriptor = descriptor
        self.peer = .kernel
    }

    /// A socket whose peer is `transport` instead of the kernel.
    package init(memory transport: MemoryTransport) {
        self.descriptor = -1
        self.peer = .memory(transport)
    }

    /// A socket that reads and writes through `session`, which runs over `plaintext`'s descriptor.
    package init(secure session: any WireSession, over plaintext: Socket) {
        self.descriptor = plaintext.descriptor
        self.peer = .secure(session, over: plaintext)
    }

    deinit {
        if case .kernel = peer, descriptor >= 0 { close(descriptor) }
    }

    /// Whether reads and writes go through a ``WireSession``.
    package var isSecure: Bool {
        if case .secure = peer { return true }
        return false
    }

    /// Receives up to `buffer.count` bytes. Returns 0 at end of stream, -1 on error.
    package func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        switch peer {
        case .kernel:
            while true {
                let result = recv(descriptor, base, buffer.count, 0)
                if result < 0 && errno == EINTR { continue }
                return result
            }
        case .memory(let memory):
            return memory.receive(into: buffer)
        case .secure(let session, _):
            return session.receive(into: buffer)
        }
    }

    /// Sends all of `bytes`. Returns `false` if the peer went away or the socket failed.
    ///
    /// `MSG_NOSIGNAL` keeps a vanished peer from raising `SIGPIPE`.
    package func sendAll(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        switch peer {
        case .kernel: return sendToKernel(base, count: bytes.count, flags: Int32(MSG_NOSIGNAL)) == bytes.count
        case .memory(let memory): return memory.send(bytes)
        case .secure(let session, _): return session.send(bytes)
        }
    }

    /// Sends all of `first` then all of `second` as one stream of bytes; on a kernel socket with one
    /// `sendmsg`, so that a request header and its payload leave in one system call. Returns `false`
    /// if the peer went away or the socket failed.
    ///
    /// `MSG_NOSIGNAL` keeps a vanished peer from raising `SIGPIPE`.
    package func sendAll(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        switch peer {
        case .kernel:
            return sendMessageToKernel(first, second)
        case .memory(let memory):
            return (first.count == 0 || memory.send(first)) && (second.count == 0 || memory.send(second))
        case .secure(let session, _):
            // TLS encrypts each part into records straight from the caller's memory: no copy here.
            return (first.count == 0 || session.send(first)) && (second.count == 0 || session.send(second))
        }
    }

    /// Sends both parts with `sendmsg` until both are gone; `false` when the kernel refused.
    private func sendMessageToKernel(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        var vectors = (
            iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
            iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)
        )
        return withUnsafeMutablePointer(to: &vectors) { pair in
            pair.withMemoryRebound(to: iovec.self, capacity: 2) { vector in
                // Skip empty parts, then send what is left until both parts are gone.
                var index = 0
                while index < 2 && (vector[index].iov_len == 0 || vector[index].iov_base == nil) { index += 1 }
                while index < 2 {
                    var message = msghdr()
                    message.msg_iov = vector + index
                    message.msg_iovlen = index == 0 && vector[1].iov_len > 0 && vector[1].iov_base != nil ? 2 : 1
                    let sent = sendmsg(descriptor, &message, Int32(MSG_NOSIGNAL))
                    if sent < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    var remaining = sent
                    while remaining > 0 && index < 2 {
                        let step = min(remaining, vector[index].iov_len)
                        vector[index].iov_base += step
                        vector[index].iov_len -= step
                        remaining -= step
                        if vector[index].iov_len == 0 { index += 1 }
                    }
                    while index < 2 && (vector[index].iov_len == 0 || vector[index].iov_base == nil) { index += 1 }
                }
                return true
            }
        }
    }

    /// Whether this is a plain kernel socket (no TLS session, no in-memory peer): only then can
    /// ``sendFile(_:at:count:)`` move file data into it.
    package var isKernel: Bool {
        if case .kernel = peer { return descriptor >= 0 }
        return false
    }

    /// Sends `count` bytes of the file open as `file`, from `offset` on, with `sendfile`: the kernel
    /// moves page-cache pages into the socket without copying them through this process. Returns
    /// how many bytes went out: `count`, or fewer when `sendfile` failed (`errno` tells why: EINVAL
    /// or ENOSYS where the file or socket does not support it, EPIPE when the peer left) or the file
    /// ended early. Never moves the file's position; only for ``isKernel`` sockets (0 otherwise).
    package func sendFile(_ file: Int32, at offset: UInt64, count: Int) -> Int {
        guard isKernel else { return 0 }
        // sendfile has no MSG_NOSIGNAL: a peer that left raises SIGPIPE, which would kill a program
        // that embeds the server without ignoring it. Blocked on this thread for the call; one it
        // raised is taken back before the mask is restored.
        var pipeSignal = BrokenPipeSignalBlock()
        defer { pipeSignal.end() }
        var position = off_t(offset)
        var sent = 0
        while sent < count {
            // At most 1 GiB per call, below what sendfile moves in one call (0x7ffff000 bytes).
            let result = Glibc.sendfile(descriptor, file, &position, min(count - sent, 1 << 30))
            if result < 0 {
                let code = errno
                if code == EINTR { continue }
                pipeSignal.raised = code == EPIPE
                errno = code
                return sent
            }
            if result == 0 { return sent }
            sent += result
        }
        return sent
    }

    /// Sends a leading part of `bytes`, as much as the socket takes without waiting, and returns its
    /// length; `nil` if the peer went away or the socket failed. The rest (from the returned length
    /// on, the same memory) must go to ``sendAll(_:)`` before anything else is sent: a secure
    /// socket may hold back part of what it counted as sent until then.
    package func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress else { return 0 }
        switch peer {
        case .kernel: return sendToKernel(base, count: bytes.count, flags: Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
        case .memory(let memory): return memory.send(bytes) ? bytes.count : nil
        case .secure(let session, _): return session.sendWithoutWaiting(bytes)
        }
    }

    /// Sends `count` bytes from `base` with `flags` and returns how many went: fewer when the socket
    /// would block (with `MSG_DONTWAIT`, or a send timeout), `nil` when the kernel refused.
    private func sendToKernel(_ base: UnsafeRawPointer, count: Int, flags: Int32) -> Int? {
        var sent = 0
        while sent < count {
            let result = send(descriptor, base + sent, count - sent, flags)
            if result < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                return nil
            }
            sent += result
        }
        return sent
    }

    /// Asks the kernel for a send buffer of `bytes` on a Unix-domain socket; TCP sockets are left
    /// alone, because setting `SO_SNDBUF` there switches off the kernel's own buffer autotuning.
    ///
    /// A Unix stream socket queues at most the sender's send buffer (208 KiB by default) towards the
    /// peer. A connection that copies a 1 MiB read into its reply buffer while the client drains the
    /// previous reply then leaves the client waiting; with a few MiB queued, the copy overlaps the
    /// client's reading. The kernel caps the size at `net.core.wmem_max`.
    package func setUnixSendBufferSize(_ bytes: Int) {
        guard case .kernel = peer, descriptor >= 0 else { return }
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0, domain == AF_UNIX else { return }
        var size = Int32(clamping: bytes)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Gives a Unix-domain socket back the send buffer a new one gets (`net.core.wmem_default`).
    ///
    /// For TLS connections: there the client, decrypting, is the bottleneck, and it reads what a
    /// large send buffer queued long after it was written, from colder caches. With 4 MiB queued,
    /// fio's kernel copy out of the socket took twice the time and 1 MiB TLS reads ran about 9 %
    /// slower than with the default (`Benchmarks/README.md`).
    package func resetUnixSendBufferSize() {
        guard let size = Self.newSocketSendBufferSize else { return }
        // The kernel doubles what is asked; asking for half the default gives the default.
        setUnixSendBufferSize(size / 2)
    }

    /// What the kernel reports as the send buffer of a new Unix stream socket, or `nil` if no
    /// socket could be made to ask.
    package static let newSocketSendBufferSize = unixSendBufferSize(askingFor: nil)

    /// What the kernel reports as the send buffer of a new Unix stream socket after
    /// ``setUnixSendBufferSize(_:)`` asked for `bytes` (`nil`: nothing asked), or `nil` if no socket
    /// could be made to ask. The kernel doubles what is asked and caps it at `net.core.wmem_max`.
    package static func unixSendBufferSize(askingFor bytes: Int?) -> Int? {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return nil }
        defer { close(pair[1]) }
        let socket = Socket(adopting: pair[0])
        if let bytes { socket.setUnixSendBufferSize(bytes) }
        return socket.sendBufferSize
    }

    /// The send buffer size the kernel reports (`SO_SNDBUF`: twice what was asked, for bookkeeping).
    package var sendBufferSize: Int {
        var size: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard descriptor >= 0, getsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, &length) == 0 else { return 0 }
        return Int(size)
    }

    /// Makes a blocking `recv` fail after `timeout` without data; `nil` waits forever.
    package func setReceiveTimeout(_ timeout: Duration?) {
        guard descriptor >= 0 else { return }
        var value = timeval(tv_sec: 0, tv_usec: 0)
        if let timeout {
            let (seconds, attoseconds) = timeout.components
            value.tv_sec = Int(max(seconds, 0))
            value.tv_usec = Int(max(attoseconds / 1_000_000_000_000, seconds == 0 ? 1000 : 0))
        }
        _ = setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sets `SO_KEEPALIVE` if this is a TCP socket (IPv4 or IPv6); other sockets are left alone.
    package func enableKeepAliveIfTCP() {
        guard descriptor >= 0 else { return }
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0,
            domain == AF_INET || domain == AF_INET6
        else { return }
        var one: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Stops further receives; a blocked `recv` returns end of stream. Replies can still be sent.
    package func shutdownReading() {
        guard descriptor >= 0 else { return }
        _ = Glibc.shutdown(descriptor, Int32(SHUT_RD))
    }

    /// Stops sending; the peer sees end of stream after what was sent. A secure socket first tells
    /// the peer the session ends (TLS `close_notify`).
    package func shutdownWriting() {
        if case .secure(let session, _) = peer { session.close() }
        guard descriptor >= 0 else { return }
        _ = Glibc.shutdown(descriptor, Int32(SHUT_WR))
    }

    /// Stops both directions, which makes the peer see end of stream at once and a blocked `recv`
    /// return. With `notifyingPeer`, a secure socket first tells the peer the session ends (TLS
    /// `close_notify`); the client, which sends it when it stops writing, passes `false`.
    package func shutdownBoth(notifyingPeer: Bool = true) {
        if notifyingPeer, case .secure(let session, _) = peer { session.close() }
        guard descriptor >= 0 else { return }
        _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR))
    }
}

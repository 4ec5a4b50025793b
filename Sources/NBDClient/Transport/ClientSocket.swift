import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// A connected stream socket that closes itself when the last reference goes away.
///
/// `send` and `recv` block; the connection's reader thread receives and the requesting threads send
/// (see ``NBDConnection``). `shutdown` may be called from any thread to wake a blocked `recv`.
///
/// After `NBD_OPT_STARTTLS` the handshake replaces the socket by ``upgraded(to:)``, which shares
/// the descriptor and sends and receives through the TLS session.
final class ClientSocket: Sendable {
    /// Closes the descriptor when both the plaintext and the TLS socket objects are gone.
    private final class Descriptor: Sendable {
        let value: Int32
        init(_ value: Int32) { self.value = value }
        deinit { close(value) }
    }

    private let owner: Descriptor
    var descriptor: Int32 { owner.value }
    /// The TLS session every byte goes through, or `nil` for plaintext.
    let session: (any ClientTLSSession)?

    private init(adopting descriptor: Int32) {
        self.owner = Descriptor(descriptor)
        self.session = nil
    }

    private init(owner: Descriptor, session: any ClientTLSSession) {
        self.owner = owner
        self.session = session
    }

    /// The same connection, sending and receiving through `session` from now on.
    func upgraded(to session: any ClientTLSSession) -> ClientSocket {
        ClientSocket(owner: owner, session: session)
    }

    /// Connects to `endpoint`, blocking.
    static func connect(to endpoint: NBDEndpoint) throws(NBDError) -> ClientSocket {
        switch endpoint.transport {
        case .unix(let path):
            return try connectUnix(path)
        case .tcp(let host, let port):
            return try connectTCP(host: host, port: port)
        }
    }

    private static func connectUnix(_ path: String) throws(NBDError) -> ClientSocket {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw NBDError(.invalidArgument, "the socket path \(path) is longer than a Unix socket address allows")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw NBDError(errno: errno, "cannot create a Unix socket") }
        let socket = ClientSocket(adopting: descriptor)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            throw NBDError(.ioError, "cannot connect to the NBD server at \(path): \(String(cString: strerror(code)))")
        }
        return socket
    }

    private static func connectTCP(host: String, port: String) throws(NBDError) -> ClientSocket {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, port, &hints, &list)
        guard status == 0, let first = list else {
            throw NBDError(.ioError, "cannot resolve \(host) port \(port): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError: Int32 = 0
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let descriptor = socket(
                info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue),
                info.pointee.ai_protocol)
            guard descriptor >= 0 else {
                lastError = errno
                continue
            }
            let socket = ClientSocket(adopting: descriptor)
            if Glibc.connect(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                // Requests are small and latency-bound; do not let Nagle hold them back.
                var one: Int32 = 1
                _ = setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return socket
            }
            lastError = errno
        }
        throw NBDError(
            .ioError, "cannot connect to the NBD server at \(host):\(port): \(String(cString: strerror(lastError)))")
    }

    /// Receives up to `buffer.count` bytes. Returns 0 at end of stream, -1 on error.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        if let session { return session.receive(into: buffer) }
        while true {
            let result = recv(descriptor, base, buffer.count, 0)
            if result < 0 && errno == EINTR { continue }
            return result
        }
    }

    /// Sends all of `first` then all of `second` as one stream of bytes, with `sendmsg` so that a
    /// request header and its payload leave in one system call. Returns `false` if the socket failed.
    ///
    /// `MSG_NOSIGNAL` keeps a vanished server from raising `SIGPIPE`.
    func sendAll(
        _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) -> Bool {
        if let session {
            // TLS encrypts each part into records straight from the caller's memory: no copy here.
            return (first.count == 0 || session.send(first)) && (second.count == 0 || session.send(second))
        }
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

    /// Makes a blocking `recv` fail after `timeout` without data; `nil` waits forever.
    func setReceiveTimeout(_ timeout: Duration?) {
        var value = timeval(tv_sec: 0, tv_usec: 0)
        if let timeout {
            let (seconds, attoseconds) = timeout.components
            value.tv_sec = Int(max(seconds, 0))
            value.tv_usec = Int(max(attoseconds / 1_000_000_000_000, seconds == 0 ? 1000 : 0))
        }
        _ = setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Asks for a large send buffer on a Unix socket, so that a 1 MiB write does not wait for the
    /// server to drain the default 208 KiB (TCP is left to the kernel's autotuning).
    func enlargeUnixSendBuffer(_ bytes: Int) {
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0, domain == AF_UNIX else { return }
        var size = Int32(clamping: bytes)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Stops sending; the server sees end of stream after what was sent.
    func shutdownWriting() {
        session?.close()
        _ = Glibc.shutdown(descriptor, Int32(SHUT_WR))
    }

    /// Stops both directions: a blocked `recv` returns end of stream at once.
    func shutdownBoth() {
        _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR))
    }
}

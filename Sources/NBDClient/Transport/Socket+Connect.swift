import NBDCore
import NBDWire

#if canImport(Glibc)
    import Glibc
#endif

/// How the client opens a ``Socket``: connecting to an ``NBDEndpoint``, and upgrading to TLS after
/// `NBD_OPT_STARTTLS` (the upgraded socket shares the descriptor and sends and receives through the
/// TLS session).
///
/// The connection's reader thread receives and the requesting threads send (see ``NBDConnection``);
/// `shutdownBoth` may be called from any thread to wake a blocked `recv`.
extension Socket {
    /// The same connection, sending and receiving through `session` from now on.
    func upgraded(to session: any ClientTLSSession) -> Socket {
        Socket(secure: ClientSessionAdapter(session), over: self)
    }

    /// Connects to `endpoint`, blocking.
    static func connect(to endpoint: NBDEndpoint) throws(NBDError) -> Socket {
        switch endpoint.transport {
        case .unix(let path):
            return try connectUnix(path)
        case .tcp(let host, let port):
            return try connectTCP(host: host, port: port)
        }
    }

    private static func connectUnix(_ path: String) throws(NBDError) -> Socket {
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
        let socket = Socket(adopting: descriptor)
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

    private static func connectTCP(host: String, port: String) throws(NBDError) -> Socket {
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
            let socket = Socket(adopting: descriptor)
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

    /// Asks for a large send buffer on a Unix socket, so that a 1 MiB write does not wait for the
    /// server to drain the default 208 KiB (TCP is left to the kernel's autotuning).
    func enlargeUnixSendBuffer(_ bytes: Int) {
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0, domain == AF_UNIX else { return }
        var size = Int32(clamping: bytes)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
}

/// A ``ClientTLSSession`` as the wire layer's socket sees it.
final class ClientSessionAdapter: WireSession {
    private let session: any ClientTLSSession

    init(_ session: any ClientTLSSession) {
        self.session = session
    }

    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int { session.receive(into: buffer) }
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool { session.send(bytes) }
    func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> Int? { session.send(bytes) ? bytes.count : nil }
    func close() { session.close() }
}

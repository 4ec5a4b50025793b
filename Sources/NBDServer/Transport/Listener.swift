import NBDCore
import NBDWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A listening socket whose accept loop runs on a thread of its own (a blocking `accept` must not
/// occupy the cooperative pool).
final class Listener: Sendable {
    /// The address actually bound (with the real port when port 0 was asked for).
    let address: ListenAddress
    private let descriptor: Int32
    /// Whether a Unix socket's file is this listener's to remove (not for an adopted socket).
    private let ownsPath: Bool
    private let stopped = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)

    /// Creates the socket, binds and listens.
    init(_ requested: ListenAddress, backlog: Int32 = 128) throws(NBDError) {
        switch requested {
        case .unix(let path):
            descriptor = try Self.bindUnix(path: path, backlog: backlog)
            address = requested
        case .tcp(let host, let port):
            let (fd, bound) = try Self.bindTCP(host: host, port: port, backlog: backlog)
            descriptor = fd
            address = .tcp(host: host, port: bound)
        }
        ownsPath = true
    }

    /// Adopts `descriptor`, a socket already bound and listening (systemd socket activation). Its
    /// Unix socket file, if any, is left in place.
    init(adopting descriptor: Int32) throws(NBDError) {
        var listening: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0, listening == 1 else {
            throw NBDError(.invalidArgument, "descriptor \(descriptor) is not a listening socket")
        }
        guard let bound = Self.localAddress(of: descriptor) else {
            throw NBDError(.invalidArgument, "descriptor \(descriptor) is neither a unix nor a TCP socket")
        }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        self.descriptor = descriptor
        self.address = bound
        self.ownsPath = false
    }

    /// `address` (an `in_addr` or `in6_addr` of `family`) in its numeric text form.
    private static func numericHost<Address>(_ address: Address, family: Int32) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let converted = withUnsafeBytes(of: address) { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        guard converted != nil else { return "" }
        return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// What `descriptor` is bound to: a Unix socket's path, or a TCP socket's address and port.
    private static func localAddress(of descriptor: Int32) -> ListenAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard result == 0 else { return nil }
        return withUnsafePointer(to: &storage) { pointer -> ListenAddress? in
            switch Int32(pointer.pointee.ss_family) {
            case AF_UNIX:
                return pointer.withMemoryRebound(to: sockaddr_un.self, capacity: 1) { unix in
                    withUnsafeBytes(of: unix.pointee.sun_path) { raw in
                        let bytes = raw.prefix(while: { $0 != 0 })
                        return .unix(path: String(decoding: bytes, as: UTF8.self))
                    }
                }
            case AF_INET:
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
                    .tcp(
                        host: numericHost(inet.pointee.sin_addr, family: AF_INET),
                        port: UInt16(bigEndian: inet.pointee.sin_port))
                }
            case AF_INET6:
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { inet in
                    .tcp(
                        host: numericHost(inet.pointee.sin6_addr, family: AF_INET6),
                        port: UInt16(bigEndian: inet.pointee.sin6_port))
                }
            default:
                return nil
            }
        }
    }

    deinit {
        closeDescriptor()
    }

    /// Starts accepting; `handler` receives every accepted socket on the accept thread.
    func start(_ handler: @escaping @Sendable (Socket) -> Void) throws(NBDError) {
        let started = ThreadStarter.start(name: "nbd-accept") { [self] in
            acceptLoop(handler)
            // The accept thread owns the descriptor from here on: closing it only after accept()
            // returned means the number cannot be reused under a blocked accept().
            closeDescriptor()
        }
        if !started {
            throw NBDError(.outOfMemory, "cannot start the accept thread for \(address)")
        }
    }

    /// Stops accepting and removes a Unix socket file at once; the accept thread wakes, leaves and
    /// closes the socket. Call only after ``start(_:)``. Does not block.
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // On Linux, shutting down a listening socket makes a blocked accept() return EINVAL, and
        // later connects are refused.
        _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR))
        if ownsPath, case .unix(let path) = address {
            unlink(path)
        }
    }

    /// Closes the socket without accepting (for a listener that was never started).
    func closeWithoutStarting() {
        closeDescriptor()
        stopped.store(true, ordering: .releasing)
    }

    private func closeDescriptor() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        close(descriptor)
        if ownsPath, case .unix(let path) = address, !stopped.load(ordering: .acquiring) {
            unlink(path)
        }
    }

    private func acceptLoop(_ handler: @Sendable (Socket) -> Void) {
        while !stopped.load(ordering: .acquiring) {
            let fd = accept(descriptor, nil, nil)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: back off briefly instead of spinning; the
                    // pending connection stays in the backlog.
                    usleep(10_000)
                    continue
                default:
                    return
                }
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            if stopped.load(ordering: .acquiring) {
                close(fd)
                return
            }
            if case .tcp = address {
                var one: Int32 = 1
                _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            handler(Socket(adopting: fd))
        }
    }

    private static func bindUnix(path: String, backlog: Int32) throws(NBDError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw NBDError(.invalidArgument, "unix socket path '\(path)' is empty or longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        // Replace a stale socket left by an earlier run, but never another kind of file.
        var info = stat()
        if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK {
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NBDError(errno: errno, "cannot create a unix socket") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw NBDError(errno: code, "cannot bind unix socket '\(path)'")
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            unlink(path)
            throw NBDError(errno: code, "cannot listen on unix socket '\(path)'")
        }
        return fd
    }

    private static func bindTCP(host: String, port: UInt16, backlog: Int32) throws(NBDError) -> (Int32, UInt16) {
        let name = host == "localhost" ? "127.0.0.1" : host
        var storage = sockaddr_storage()
        var length: socklen_t
        let family: Int32
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, name, &v4) == 1 {
            family = AF_INET
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    $0.pointee.sin_family = sa_family_t(AF_INET)
                    $0.pointee.sin_port = port.bigEndian
                    $0.pointee.sin_addr = v4
                }
            }
        } else if inet_pton(AF_INET6, name, &v6) == 1 {
            family = AF_INET6
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    $0.pointee.sin6_family = sa_family_t(AF_INET6)
                    $0.pointee.sin6_port = port.bigEndian
                    $0.pointee.sin6_addr = v6
                }
            }
        } else {
            throw NBDError(.invalidArgument, "'\(host)' is not a numeric IPv4 or IPv6 address (or localhost)")
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NBDError(errno: errno, "cannot create a TCP socket") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw NBDError(errno: code, "cannot bind TCP \(host):\(port)")
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            throw NBDError(errno: code, "cannot listen on TCP \(host):\(port)")
        }
        // The port the system picked for port 0 (the host stays as asked, such as `localhost`).
        guard case .tcp(_, let boundPort)? = localAddress(of: fd) else { return (fd, port) }
        return (fd, boundPort)
    }
}

import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// Asks the kernel who is at the other end of a connected socket, for ``ConnectionInfo/peer``.
enum PeerLookup {
    /// The peer of `descriptor`: its IP address and port, or for a Unix-domain socket its
    /// credentials (`SO_PEERCRED`). `nil` when the descriptor is not a socket the kernel can answer
    /// for (an in-memory connection).
    static func peer(of descriptor: Int32) -> PeerAddress? {
        guard descriptor >= 0 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let found = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor, $0, &length) }
        }
        guard found == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { raw in
                let address = raw.load(as: sockaddr_in.self)
                let bytes = withUnsafeBytes(of: address.sin_addr) { Array($0) }
                return PeerAddress.ipv4(bytes, port: UInt16(bigEndian: address.sin_port))
            }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { raw in
                let address = raw.load(as: sockaddr_in6.self)
                let bytes = withUnsafeBytes(of: address.sin6_addr) { Array($0) }
                return PeerAddress.ipv6(bytes, port: UInt16(bigEndian: address.sin6_port))
            }
        case AF_UNIX:
            var credentials = UnixCredentials()
            var size = socklen_t(MemoryLayout<UnixCredentials>.size)
            guard getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0 else {
                return .unix(credentials: nil)
            }
            return .unix(credentials: PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid))
        default:
            return nil
        }
    }
}

/// Linux's `struct ucred`, which Glibc declares only under `_GNU_SOURCE`: what `SO_PEERCRED` fills.
private struct UnixCredentials {
    var pid: pid_t = 0
    var uid: uid_t = 0
    var gid: gid_t = 0
}

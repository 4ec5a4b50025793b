#if canImport(Glibc)
    import Glibc
#endif

/// Where a client connected from: an IPv4 or IPv6 address and port, or a Unix-domain socket with
/// the client's credentials when the kernel gives them.
///
/// The server fills it in (``ConnectionInfo/peer``) so that filters can decide by address, as
/// nbdkit's ip filter does, and backends can report it, as nbdkit's info plugin does.
///
/// ```swift
/// let peer = PeerAddress.ipv4([127, 0, 0, 1], port: 40000)
/// print(peer)   // 127.0.0.1:40000
/// ```
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    /// The kind of socket the client connected over.
    public struct Family: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        /// IPv4 (`AF_INET`).
        public static let ipv4 = Family(name: "ipv4")
        /// IPv6 (`AF_INET6`).
        public static let ipv6 = Family(name: "ipv6")
        /// A Unix-domain socket (`AF_UNIX`).
        public static let unix = Family(name: "unix")
        public var description: String { name }
    }

    /// The kind of socket.
    public var family: Family
    /// The address in network byte order: 4 bytes for IPv4, 16 for IPv6, none for Unix sockets.
    public var address: [UInt8]
    /// The client's port (0 for Unix sockets).
    public var port: UInt16
    /// For a Unix-domain socket, the client's process, user and group, or `nil` when unknown.
    public var credentials: PeerCredentials?

    /// An IPv4 peer; `address` holds 4 bytes in network order.
    public static func ipv4(_ address: [UInt8], port: UInt16) -> PeerAddress {
        PeerAddress(family: .ipv4, address: address, port: port, credentials: nil)
    }

    /// An IPv6 peer; `address` holds 16 bytes in network order.
    public static func ipv6(_ address: [UInt8], port: UInt16) -> PeerAddress {
        PeerAddress(family: .ipv6, address: address, port: port, credentials: nil)
    }

    /// A Unix-domain socket peer, with its credentials when known.
    public static func unix(credentials: PeerCredentials?) -> PeerAddress {
        PeerAddress(family: .unix, address: [], port: 0, credentials: credentials)
    }

    /// The address alone, in the usual text form (`127.0.0.1`, `::1` as RFC 5952 writes it), or
    /// `unix` for a Unix-domain socket.
    public var addressText: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let domain: Int32
        switch family {
        case .ipv4 where address.count == 4: domain = AF_INET
        case .ipv6 where address.count == 16: domain = AF_INET6
        default: return "unix"
        }
        let converted = address.withUnsafeBytes { bytes in
            text.withUnsafeMutableBufferPointer {
                inet_ntop(domain, bytes.baseAddress, $0.baseAddress, socklen_t($0.count))
            }
        }
        guard converted != nil else { return "unknown" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `ADDRESS:PORT` for IPv4, `[ADDRESS]:PORT` for IPv6, `unix` for Unix sockets (no host paths
    /// leak, as with nbdkit's info plugin).
    public var description: String {
        switch family {
        case .ipv4: return "\(addressText):\(port)"
        case .ipv6: return "[\(addressText)]:\(port)"
        default: return "unix"
        }
    }
}

import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// One entry of nbdkit's ip filter `allow=` or `deny=` lists: a keyword, an address or network, or
/// a Unix-socket peer's process, user or group.
public struct IPRule: Sendable, Hashable, CustomStringConvertible {
    private enum Kind: Sendable, Hashable {
        case any
        case family(PeerAddress.Family)
        case network(family: PeerAddress.Family, address: [UInt8], prefix: Int)
        case pid(Int32)
        case uid(UInt32)
        case gid(UInt32)
        /// vsock keywords and CIDs: accepted as nbdkit does, matching nothing (no vsock listener here).
        case never
    }

    private let kind: Kind
    /// The rule as written on the command line.
    public let description: String

    /// Parses one rule: `all`/`any`, `allipv4`/`anyipv4`, `allipv6`/`anyipv6`, `allunix`/`anyunix`,
    /// `allvsock`/`anyvsock`, `A.B.C.D[/NN]`, `IPv6[/NN]`, `pid:PID`, `uid:UID`, `gid:GID`,
    /// `vsock-cid:CID`, `vsock-port:PORT`.
    ///
    /// - Throws: `NBDError` (`EINVAL`) naming `parameter` and the accepted forms.
    public init(_ text: String, parameter: String) throws(NBDError) {
        description = text
        func invalid() -> NBDError {
            NBDError(
                .invalidArgument,
                "\(parameter)=\(text): expected a comma-separated list of all, any, anyipv4, anyipv6, anyunix, anyvsock, A.B.C.D[/NN], IPv6[/NN], pid:PID, uid:UID, gid:GID, vsock-cid:CID or vsock-port:PORT"
            )
        }
        switch text {
        case "all", "any": kind = .any; return
        case "allipv4", "anyipv4": kind = .family(.ipv4); return
        case "allipv6", "anyipv6": kind = .family(.ipv6); return
        case "allunix", "anyunix": kind = .family(.unix); return
        case "allvsock", "anyvsock": kind = .never; return
        default: break
        }
        if let colon = text.firstIndex(of: ":"),
            ["pid", "uid", "gid", "vsock-cid", "vsock-port"].contains(String(text[..<colon]))
        {
            let number = String(text[text.index(after: colon)...])
            switch text[..<colon] {
            case "pid":
                guard let pid = Int32(number), pid > 0 else { throw invalid() }
                kind = .pid(pid)
            case "uid":
                guard let uid = UInt32(number) else { throw invalid() }
                kind = .uid(uid)
            case "gid":
                guard let gid = UInt32(number) else { throw invalid() }
                kind = .gid(gid)
            default:
                guard UInt32(number) != nil else { throw invalid() }
                kind = .never
            }
            return
        }
        var addressText = Substring(text)
        var prefix: Int?
        if let slash = text.firstIndex(of: "/") {
            addressText = text[..<slash]
            guard let bits = Int(text[text.index(after: slash)...]) else { throw invalid() }
            prefix = bits
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        if String(addressText).withCString({ inet_pton(AF_INET, $0, &bytes) }) == 1 {
            let bits = prefix ?? 32
            guard (0...32).contains(bits) else { throw invalid() }
            kind = .network(family: .ipv4, address: Array(bytes.prefix(4)), prefix: bits)
        } else if String(addressText).withCString({ inet_pton(AF_INET6, $0, &bytes) }) == 1 {
            let bits = prefix ?? 128
            guard (0...128).contains(bits) else { throw invalid() }
            kind = .network(family: .ipv6, address: bytes, prefix: bits)
        } else {
            throw invalid()
        }
    }

    /// Whether the rule matches `peer`.
    public func matches(_ peer: PeerAddress) -> Bool {
        switch kind {
        case .any: return true
        case .family(let family): return peer.family == family
        case .network(let family, let address, let prefix):
            guard peer.family == family, peer.address.count == address.count else { return false }
            return Self.prefix(of: peer.address, equals: address, bits: prefix)
        case .pid(let pid): return peer.credentials?.pid == pid
        case .uid(let uid): return peer.credentials?.uid == uid
        case .gid(let gid): return peer.credentials?.gid == gid
        case .never: return false
        }
    }

    private static func prefix(of lhs: [UInt8], equals rhs: [UInt8], bits: Int) -> Bool {
        var remaining = bits
        for index in lhs.indices where remaining > 0 {
            let take = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - take))
            if lhs[index] & mask != rhs[index] & mask { return false }
            remaining -= take
        }
        return true
    }

    /// Parses every comma-separated rule of every value of `parameter`.
    public static func list(_ values: [String], parameter: String) throws(NBDError) -> [IPRule] {
        var rules: [IPRule] = []
        for value in values {
            for item in value.split(separator: ",", omittingEmptySubsequences: false) {
                rules.append(try IPRule(String(item), parameter: parameter))
            }
        }
        return rules
    }
}

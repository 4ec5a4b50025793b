import NBDCore

/// Where an NBD server listens: a Unix socket or a TCP host and port, optionally with an export name
/// taken from an NBD URI.
///
/// ```swift
/// let local = NBDEndpoint.unix("/run/nbd.sock")
/// let remote = try NBDEndpoint(uri: "nbd://127.0.0.1:10809/disk")   // exportName "disk"
/// ```
public struct NBDEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// How to reach the server.
    public enum Transport: Sendable, Hashable {
        /// A Unix-domain stream socket at a path.
        case unix(path: String)
        /// A TCP connection to a host name or address and a port (number or service name).
        case tcp(host: String, port: String)
    }

    /// How to reach the server.
    public var transport: Transport
    /// The export named by the URI, or `nil` when the endpoint was not made from a URI (the
    /// default export is `""`).
    public var exportName: String?
    /// TLS to use (from an `nbds://` or `nbds+unix://` URI), or `nil` for plaintext.
    public var tls: ClientTLSOptions?

    /// An endpoint for a transport.
    public init(_ transport: Transport, exportName: String? = nil, tls: ClientTLSOptions? = nil) {
        self.transport = transport
        self.exportName = exportName
        self.tls = tls
    }

    /// A Unix-domain socket at `path`.
    public static func unix(_ path: String) -> NBDEndpoint { NBDEndpoint(.unix(path: path)) }

    /// A TCP server at `host` and `port` (10809, the NBD port, by default).
    public static func tcp(_ host: String, port: Int = 10809) -> NBDEndpoint {
        NBDEndpoint(.tcp(host: host, port: String(port)))
    }

    /// Parses an NBD URI (the NBD project's URI specification): `nbd://host[:port][/export]` and
    /// `nbd+unix:///[export]?socket=PATH`, and their TLS forms `nbds://` and `nbds+unix://`, which
    /// require TLS and take libnbd's query parameters `tls-certificates=DIR`, `tls-psk-file=FILE`,
    /// `tls-username=NAME` (or a user part, `nbds+unix://NAME@/...`) and
    /// `tls-verify-peer=true|false` (into ``tls``). The export name is percent-decoded.
    ///
    /// - Throws: `NBDError` (`EINVAL`) for anything else.
    public init(uri: String) throws(NBDError) {
        guard let schemeEnd = uri.firstRange(of: "://") else {
            throw NBDError(
                .invalidArgument,
                "\(uri) is not an NBD URI: expected nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH")
        }
        let scheme = uri[..<schemeEnd.lowerBound].lowercased()
        var rest = uri[schemeEnd.upperBound...]
        var query = ""
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        if let hash = query.firstIndex(of: "#") { query = String(query[..<hash]) }
        var authority: Substring
        let path: Substring
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
            path = ""
        }
        // libnbd takes the TLS user name from the user part too: nbds+unix://alice@/?socket=...
        var userName: String?
        if let at = authority.lastIndex(of: "@") {
            userName = try Self.percentDecoded(authority[..<at], in: uri)
            authority = authority[authority.index(after: at)...]
        }
        let export = try Self.percentDecoded(path, in: uri)
        var parameters: [String: String] = [:]
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            parameters[String(parts[0])] = try Self.percentDecoded(parts.count > 1 ? parts[1] : "", in: uri)
        }
        var tls: ClientTLSOptions?
        if scheme.hasPrefix("nbds") {
            tls = try Self.tlsOptions(parameters, in: uri)
            if tls?.username == nil { tls?.username = userName }
        }
        switch scheme {
        case "nbd", "nbds":
            guard !authority.isEmpty else {
                throw NBDError(.invalidArgument, "\(uri): an nbd:// URI needs a host, as in nbd://localhost:10809/")
            }
            let (host, port) = try Self.hostAndPort(authority, in: uri)
            self.init(.tcp(host: host, port: port), exportName: export, tls: tls)
        case "nbd+unix", "nbds+unix":
            guard authority.isEmpty else {
                throw NBDError(
                    .invalidArgument, "\(uri): an nbd+unix URI has no host; write nbd+unix:///EXPORT?socket=PATH")
            }
            guard let socket = parameters["socket"], !socket.isEmpty else {
                throw NBDError(.invalidArgument, "\(uri): an nbd+unix URI needs ?socket=PATH")
            }
            self.init(.unix(path: socket), exportName: export, tls: tls)
        default:
            throw NBDError(
                .invalidArgument,
                "\(uri): unsupported scheme \(scheme); use nbd://, nbds://, nbd+unix:// or nbds+unix://")
        }
    }

    /// libnbd's TLS query parameters of an `nbds` URI.
    private static func tlsOptions(_ parameters: [String: String], in uri: String) throws(NBDError)
        -> ClientTLSOptions
    {
        var options = ClientTLSOptions(mode: .require)
        if let directory = parameters["tls-certificates"] {
            guard !directory.isEmpty else { throw NBDError(.invalidArgument, "\(uri): tls-certificates= is empty") }
            options.certificatesDirectory = directory
        }
        if let file = parameters["tls-psk-file"] {
            guard !file.isEmpty else { throw NBDError(.invalidArgument, "\(uri): tls-psk-file= is empty") }
            options.pskFile = file
        }
        if let name = parameters["tls-username"] { options.username = name }
        if let verify = parameters["tls-verify-peer"] {
            switch verify.lowercased() {
            case "true", "yes", "on", "1": options.verifyPeer = true
            case "false", "no", "off", "0": options.verifyPeer = false
            default:
                throw NBDError(
                    .invalidArgument, "\(uri): tls-verify-peer=\(verify): expected true or false")
            }
        }
        return options
    }

    private static func hostAndPort(_ authority: Substring, in uri: String) throws(NBDError) -> (String, String) {
        var host = authority
        var port: Substring = "10809"
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else {
                throw NBDError(.invalidArgument, "\(uri): unterminated [IPv6 address]")
            }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") { port = after.dropFirst() }
            host = host[host.index(after: host.startIndex)..<close]
        } else if let colon = host.lastIndex(of: ":") {
            port = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty, !port.isEmpty else { throw NBDError(.invalidArgument, "\(uri): empty host or port") }
        return (String(host), String(port))
    }

    private static func percentDecoded(_ text: Substring, in uri: String) throws(NBDError) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw NBDError(.invalidArgument, "\(uri): bad percent escape")
            }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    public var description: String {
        switch transport {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): "\(host):\(port)"
        }
    }
}

/// Where an ``NBDServer`` listens.
///
/// ```swift
/// try server.listen(on: .unix(path: "/tmp/nbd.sock"))
/// let bound = try server.listen(on: .tcp(host: "127.0.0.1", port: 0))   // port 0: pick a free port
/// print(bound.uri)                                                      // nbd://127.0.0.1:40123
/// ```
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// A Unix domain socket at `path`. An existing socket file at that path is replaced; the file is
    /// removed when the server stops.
    case unix(path: String)
    /// A TCP socket on the numeric IPv4 or IPv6 address `host` (or `localhost`) and `port`. Port 0
    /// asks the system for a free port; ``NBDServer/listen(on:)`` returns the port it got.
    case tcp(host: String, port: UInt16)

    /// The NBD URI a client uses to reach this address, such as `nbd+unix:///?socket=/tmp/nbd.sock`
    /// or `nbd://127.0.0.1:10809`.
    public var uri: String { uri(exportName: "") }

    /// The NBD URI a client uses to reach export `exportName` at this address, such as
    /// `nbd+unix:///disk%201?socket=/tmp/nbd.sock` or `nbd://127.0.0.1:10809/disk%201`: the name is
    /// the URI's path, every byte but ASCII letters, digits, `-._~` and `/` percent-encoded.
    public func uri(exportName: String) -> String {
        let path = Self.percentEncoded(exportName)
        switch self {
        case .unix(let socket):
            return "nbd+unix:///\(path)?socket=\(socket)"
        case .tcp(let host, let port):
            let shown = host.contains(":") ? "[\(host)]" : host
            return exportName.isEmpty ? "nbd://\(shown):\(port)" : "nbd://\(shown):\(port)/\(path)"
        }
    }

    private static func percentEncoded(_ name: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var encoded: [UInt8] = []
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"), UInt8(ascii: "/"):
                encoded.append(byte)
            default:
                encoded += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            }
        }
        return String(decoding: encoded, as: UTF8.self)
    }

    /// The address as `unix:PATH`, `HOST:PORT` or `[IPV6]:PORT`.
    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

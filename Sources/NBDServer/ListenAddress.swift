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
    public var uri: String {
        switch self {
        case .unix(let path):
            return "nbd+unix:///?socket=\(path)"
        case .tcp(let host, let port):
            let shown = host.contains(":") ? "[\(host)]" : host
            return "nbd://\(shown):\(port)"
        }
    }

    /// The address as `unix:PATH`, `HOST:PORT` or `[IPV6]:PORT`.
    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

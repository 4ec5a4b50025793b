/// How much the noparallel filter serializes: nbdkit's `serialize` parameter.
public enum SerializeMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// At most one request of each connection runs at a time; connections still run in parallel.
    /// The default.
    case requests
    /// At most one request runs at a time, whatever its connection.
    case allRequests = "all-requests"
    /// At most one client is served at a time: the next one waits in the handshake until the one
    /// before disconnects. Multi-conn is not advertised.
    case connections

    public var description: String { rawValue }
}

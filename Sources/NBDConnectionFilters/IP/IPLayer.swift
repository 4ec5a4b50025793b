import NBDCore

/// nbdkit's ip filter: admits or refuses clients by their address, or over a Unix-domain socket by
/// their process, user or group ID (`SO_PEERCRED`), before the handshake.
///
/// The rules are nbdkit's: a client matching any `allow=` rule is admitted; otherwise one matching
/// any `deny=` rule is refused; otherwise it is admitted. A refused client's socket is closed
/// without a reply.
///
/// ```swift
/// let layer = try IPLayer(parameters: ["allow": "127.0.0.1,::1", "deny": "all"])
/// ```
public struct IPLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The allow rules, checked first.
    public let allow: [IPRule]
    /// The deny rules, checked when no allow rule matched.
    public let deny: [IPRule]

    /// Creates the layer from parsed rules.
    public init(allow: [IPRule], deny: [IPRule]) {
        self.allow = allow
        self.deny = deny
    }

    /// Whether a client at `peer` is admitted; a peer the server could not name (an in-memory
    /// connection) is admitted only when no rule is given.
    public func admits(_ peer: PeerAddress?) -> Bool {
        if allow.isEmpty && deny.isEmpty { return true }
        guard let peer else { return false }
        if allow.contains(where: { $0.matches(peer) }) { return true }
        return !deny.contains(where: { $0.matches(peer) })
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        next
    }

    /// Refuses a client the rules deny with `EPERM`.
    public func preconnect(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> Void
    ) async throws(NBDError) {
        guard admits(connection.peer) else {
            throw NBDError(
                .notPermitted,
                "ip: client \(connection.peer.map { "\($0)" } ?? "with no address") rejected by the allow/deny rules")
        }
        try await below(connection)
    }
}

extension IPLayer: ConfigurableFilterLayer {
    public static var filterName: String { "ip" }
    public static var summary: String { "admit or refuse clients by IP address, network, or Unix-socket pid/uid/gid" }
    public static var parameters: [ParameterDescription] {
        let forms = "all, anyipv4, anyipv6, anyunix, A.B.C.D[/NN], IPv6[/NN], pid:PID, uid:UID, gid:GID"
        return [
            ParameterDescription(
                "allow", "comma-separated rules admitting a client, checked first: \(forms)", repeatable: true),
            ParameterDescription(
                "deny", "comma-separated rules refusing a client that no allow rule admitted (same forms)",
                repeatable: true),
        ]
    }

    /// Creates the layer from `allow=` and `deny=`.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(
            allow: try IPRule.list(parameters.all("allow"), parameter: "allow"),
            deny: try IPRule.list(parameters.all("deny"), parameter: "deny"))
    }
}

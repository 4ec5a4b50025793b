import Synchronization

/// The facts about one client connection that a backend or filter may need when it opens:
/// the nbdkit `open` arguments, plus where the client is (nbdkit's `nbdkit_peer_name` and
/// `nbdkit_peer_pid/uid/gid`).
public struct ConnectionInfo: Sendable, Hashable {
    /// A number that identifies the connection for the life of the process.
    public var id: UInt64
    /// The export name the client asked for; `""` is the default export. The server replaces `""`
    /// by the stack's ``BackendProvider/defaultExport(_:)`` before opening.
    public var exportName: String
    /// Whether the connection is read-only (the server was started read-only).
    public var isReadOnly: Bool
    /// Where the client connected from, or `nil` when the transport has no address (an in-memory
    /// connection in tests).
    public var peer: PeerAddress?
    /// Whether the connection negotiated TLS (`NBD_OPT_STARTTLS`) before this point: nbdkit's
    /// `is_tls`.
    public var isTLS: Bool

    /// Creates connection facts. Pass ``nextID()`` for `id` unless you number connections yourself.
    public init(
        id: UInt64 = ConnectionInfo.nextID(), exportName: String = "", isReadOnly: Bool = false,
        peer: PeerAddress? = nil, isTLS: Bool = false
    ) {
        self.id = id
        self.exportName = exportName
        self.isReadOnly = isReadOnly
        self.peer = peer
        self.isTLS = isTLS
    }

    private static let counter = Atomic<UInt64>(0)

    /// Returns a new connection number, unique within this process.
    public static func nextID() -> UInt64 {
        counter.wrappingAdd(1, ordering: .relaxed).newValue
    }
}

import Synchronization

/// The facts about one client connection that a backend or filter may need when it opens:
/// the nbdkit `open` arguments.
public struct ConnectionInfo: Sendable, Hashable {
    /// A number that identifies the connection for the life of the process.
    public var id: UInt64
    /// The export name the client asked for; `""` is the default export.
    public var exportName: String
    /// Whether the connection is read-only (the server was started read-only).
    public var isReadOnly: Bool

    /// Creates connection facts. Pass ``nextID()`` for `id` unless you number connections yourself.
    public init(id: UInt64 = ConnectionInfo.nextID(), exportName: String = "", isReadOnly: Bool = false) {
        self.id = id
        self.exportName = exportName
        self.isReadOnly = isReadOnly
    }

    private static let counter = Atomic<UInt64>(0)

    /// Returns a new connection number, unique within this process.
    public static func nextID() -> UInt64 {
        counter.wrappingAdd(1, ordering: .relaxed).newValue
    }
}

/// The parameters of the multi-conn filter, named and defaulted as nbdkit's
/// `multi-conn-mode`, `multi-conn-track-dirty` and `multi-conn-exportname`.
public struct MultiConnConfiguration: Sendable, Hashable {
    /// How the filter provides (or withholds) `NBD_FLAG_CAN_MULTI_CONN`.
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// Advertise multi-conn: pass through if the layer below has it, otherwise emulate it.
        case auto
        /// Make every flush and FUA request flush every connection in the group.
        case emulate
        /// Advertise whatever the layer below advertises; flushes are only deduplicated.
        case plugin
        /// Never advertise multi-conn.
        case disable
        /// Advertise multi-conn without making it true. For measuring only: clients may lose data.
        case unsafe
    }

    /// How the filter decides that a flush has nothing to do and can be skipped.
    public enum DirtyTracking: String, Sendable, Hashable, CaseIterable {
        /// Per connection: a connection needs a flush after it wrote, or after it read and another
        /// connection's data became durable since. The default, and safe in every mode.
        case connection
        /// Per group: any write since the last flush makes every connection dirty.
        case fast
        /// No tracking: every flush is passed on (in emulate mode, to every connection).
        case off
    }

    /// The mode; ``Mode/auto`` by default.
    public var mode: Mode
    /// The dirty tracking level; ``DirtyTracking/connection`` by default.
    public var dirtyTracking: DirtyTracking
    /// Whether connections are grouped by the export name they asked for (`true`) or all share one
    /// group (`false`, the default). Flushes are copied only within a group.
    public var groupsByExportName: Bool

    /// Whether the server accepts only one connection at a time. Then nothing can be shared between
    /// connections, so ``Mode/auto`` resolves to ``Mode/disable`` and costs nothing (as in nbdkit under
    /// its serialize-connections thread model). Servers set this; it is not a command-line parameter.
    public var connectionsAreSerialized: Bool

    /// Creates a configuration; the defaults are nbdkit's.
    public init(
        mode: Mode = .auto,
        dirtyTracking: DirtyTracking = .connection,
        groupsByExportName: Bool = false,
        connectionsAreSerialized: Bool = false
    ) {
        self.mode = mode
        self.dirtyTracking = dirtyTracking
        self.groupsByExportName = groupsByExportName
        self.connectionsAreSerialized = connectionsAreSerialized
    }

    /// Parses a `multi-conn-mode` value.
    public static func parseMode(_ text: String) throws(NBDError) -> Mode {
        guard let mode = Mode(rawValue: text.lowercased()) else {
            throw NBDError(
                .invalidArgument,
                "multi-conn-mode=\(text): expected one of auto (the default), emulate, plugin, disable, unsafe")
        }
        return mode
    }

    /// Parses a `multi-conn-track-dirty` value (`conn` is accepted for `connection`).
    public static func parseDirtyTracking(_ text: String) throws(NBDError) -> DirtyTracking {
        switch text.lowercased() {
        case "connection", "conn": return .connection
        case "fast": return .fast
        case "off": return .off
        default:
            throw NBDError(
                .invalidArgument,
                "multi-conn-track-dirty=\(text): expected one of connection (the default, alias conn), fast, off")
        }
    }
}

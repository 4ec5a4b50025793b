import NBDCore
import Synchronization

/// One operation as it reached a ``RecordingFilter``: the nbdkit log filter's view, for tests.
public struct LoggedOperation: Sendable, Hashable, CustomStringConvertible {
    public var connection: UInt64
    public var command: Command
    public var offset: UInt64
    public var count: UInt64
    public var flags: CommandFlags

    public init(connection: UInt64, command: Command, offset: UInt64, count: UInt64, flags: CommandFlags) {
        self.connection = connection
        self.command = command
        self.offset = offset
        self.count = count
        self.flags = flags
    }

    public var description: String {
        "c\(connection) \(command) \(count)@\(offset) fua=\(flags.contains(.fua) ? 1 : 0)"
    }
}

/// A thread-safe log of operations shared by every connection's ``RecordingFilter``.
public final class OperationLog: Sendable {
    private let entries = LockedValue<[LoggedOperation]>([])

    public init() {}

    public func append(_ entry: LoggedOperation) {
        entries.withLock { $0.append(entry) }
    }

    /// Every entry so far, in order.
    public var all: [LoggedOperation] { entries.withLock { $0 } }

    /// How many entries are of `command`.
    public func count(of command: Command) -> Int {
        entries.withLock { $0.filter { $0.command == command }.count }
    }

    /// Forgets every entry.
    public func reset() {
        entries.withLock { $0.removeAll() }
    }
}

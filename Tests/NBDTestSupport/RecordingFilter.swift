import NBDCore

/// A pass-through filter that records every operation that reaches it, with its flags, after the
/// operation succeeded. Place it below the filter under test to see what that filter sends down.
public struct RecordingFilter<Next: BlockBackend>: Filter {
    public let next: Next
    public let log: OperationLog
    public let connection: UInt64

    public init(wrapping next: Next, log: OperationLog, connection: UInt64) {
        self.next = next
        self.log = log
        self.connection = connection
    }

    private func record(_ command: Command, _ offset: UInt64, _ count: UInt64, _ flags: CommandFlags) {
        log.append(LoggedOperation(connection: connection, command: command, offset: offset, count: count, flags: flags))
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await next.read(into: buffer, at: offset, flags: flags)
        record(.read, offset, UInt64(buffer.count), flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.write(data, at: offset, flags: flags)
        record(.write, offset, UInt64(data.count), flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.zero(count: count, at: offset, flags: flags)
        record(.writeZeroes, offset, count, flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.trim(count: count, at: offset, flags: flags)
        record(.trim, offset, count, flags)
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try await next.flush(flags: flags)
        record(.flush, 0, 0, flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.cache(count: count, at: offset, flags: flags)
        record(.cache, offset, count, flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let result = try await next.extents(count: count, at: offset, flags: flags)
        record(.blockStatus, offset, count, flags)
        return result
    }
}

/// A ``FilterLayer`` that inserts a ``RecordingFilter`` into run-time stacks.
public struct RecordingLayer: FilterLayer {
    public let log: OperationLog
    public var name: String { "recording" }

    public init(log: OperationLog) { self.log = log }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        AnyBlockBackend(RecordingFilter(wrapping: next, log: log, connection: connection.id))
    }
}

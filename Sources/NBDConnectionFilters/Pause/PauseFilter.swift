import NBDCore

/// nbdkit's pause filter for one connection: every request passes the shared ``PauseGate``.
public struct PauseFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The gate shared by every connection.
    public let gate: PauseGate

    /// Wraps `next`.
    public init(wrapping next: Next, gate: PauseGate) {
        self.next = next
        self.gate = gate
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        await gate.enter()
        defer { gate.leave() }
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        await gate.enter()
        defer { gate.leave() }
        try await next.write(data, at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        await gate.enter()
        defer { gate.leave() }
        try await next.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        await gate.enter()
        defer { gate.leave() }
        try await next.trim(count: count, at: offset, flags: flags)
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        await gate.enter()
        defer { gate.leave() }
        try await next.flush(flags: flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        await gate.enter()
        defer { gate.leave() }
        try await next.cache(count: count, at: offset, flags: flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        await gate.enter()
        defer { gate.leave() }
        return try await next.extents(count: count, at: offset, flags: flags)
    }
}

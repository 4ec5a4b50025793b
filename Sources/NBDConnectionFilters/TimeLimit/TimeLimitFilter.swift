import NBDCore

/// nbdkit's time-limit filter for one connection: once `limit` has passed since the connection
/// opened, every request fails with `ESHUTDOWN` and the server is asked to disconnect the client.
///
/// As in nbdkit the limit is checked when a request arrives: an idle client is not disconnected.
public struct TimeLimitFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// When the connection opened.
    public let start: ContinuousClock.Instant
    /// How long the client may stay connected; zero is no limit.
    public let limit: Duration
    let connectionID: UInt64
    let control: ControlSlot

    init(next: Next, limit: Duration, connectionID: UInt64, control: ControlSlot) {
        self.next = next
        self.start = .now
        self.limit = limit
        self.connectionID = connectionID
        self.control = control
    }

    /// Throws `ESHUTDOWN`, and asks for the disconnection, once the limit has passed.
    func check() throws(NBDError) {
        guard limit > .zero, ContinuousClock.now - start > limit else { return }
        control.current.disconnect(connection: connectionID)
        throw NBDError(.shutdown, "time-limit: the connection's time limit of \(limit) was exceeded; disconnecting")
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try check()
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check()
        try await next.write(data, at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check()
        try await next.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check()
        try await next.trim(count: count, at: offset, flags: flags)
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try check()
        try await next.flush(flags: flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check()
        try await next.cache(count: count, at: offset, flags: flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try check()
        return try await next.extents(count: count, at: offset, flags: flags)
    }
}

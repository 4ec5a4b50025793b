import NBDCore

/// nbdkit's spinning filter for one connection: adds the seek delays of a spinning disk with one or
/// more heads, so a client's handling of the rotational property can be tried on a RAM disk. Reads,
/// writes and zeroes move a head; the export always advertises itself rotational and, as in nbdkit,
/// not multi-conn (each connection has its own heads).
///
/// ```swift
/// let curve = try SeekCurve()
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in SpinningFilter(wrapping: next, heads: 1, separate: false, curve: curve) }
/// ```
///
/// A seek suspends the request's task (`Task.sleep`); reads, writes and zeroes are declared slow so
/// the server keeps reading the connection's requests meanwhile. A cancelled wait fails with
/// `ESHUTDOWN`.
public struct SpinningFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// Rotational, not multi-conn, with reads, writes and zeroes slow.
    public let capabilities: Capabilities
    /// The connection's heads.
    public let heads: SpinningHeads

    /// Wraps `next` with `count` heads (1 to 64), moving together unless `separate`.
    public init(wrapping next: Next, heads count: Int, separate: Bool, curve: SeekCurve) {
        self.init(wrapping: next, heads: count, separate: separate, curve: curve, sleep: Self.suspend)
    }

    /// Wraps `next` with a sleep function of the caller's (tests record seeks without waiting).
    package init(
        wrapping next: Next, heads count: Int, separate: Bool, curve: SeekCurve,
        sleep: @escaping @Sendable (Duration) async throws(NBDError) -> Void
    ) {
        var capabilities = next.capabilities
        capabilities.isRotational = true
        capabilities.canMultiConn = false
        capabilities.slowOperations.formUnion([.read, .write, .zero])
        self.next = next
        self.capabilities = capabilities
        self.heads = SpinningHeads(
            size: capabilities.size, count: count, separate: separate, curve: curve, sleep: sleep)
    }

    @Sendable
    static func suspend(_ duration: Duration) async throws(NBDError) {
        do {
            try await Task.sleep(for: duration)
        } catch {
            throw NBDError(.shutdown, "the spinning filter's seek was interrupted: the server is stopping")
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await heads.seek(to: offset)
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await heads.seek(to: offset)
        try await next.write(data, at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await heads.seek(to: offset)
        try await next.zero(count: count, at: offset, flags: flags)
    }
}

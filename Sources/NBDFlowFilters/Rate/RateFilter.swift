import NBDCore

/// nbdkit's rate filter for one connection: limits the bandwidth of reads and writes, across all
/// connections (`rate`), per connection (`connection-rate`), or both.
///
/// ```swift
/// let total = RateLimiter(bitsPerSecond: 1 << 20)          // nbdkit's rate=1M: 1 Mibit/s each way
/// let export = try MemoryBackendProvider(size: 64 << 20)
///     .wrapped { next, _ in RateFilter(wrapping: next, shared: total, connection: nil) }
/// ```
///
/// Only read and write payloads count, each direction on its own bucket; zero, trim and the other
/// requests carry no data and pass at once. A request waits (suspended, on the server's slow pool,
/// so the connection keeps reading) until its bits are in the bucket. With neither limiter the filter
/// passes everything straight down.
public struct RateFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities, with reads and writes marked slow when a limit is set.
    public let capabilities: Capabilities
    /// The limit shared by every connection (`rate`), or `nil`.
    public let shared: RateLimiter?
    /// This connection's own limit (`connection-rate`), or `nil`.
    public let connection: RateLimiter?

    /// Wraps `next`; give every connection the same `shared` limiter and each its own `connection`.
    public init(wrapping next: Next, shared: RateLimiter?, connection: RateLimiter?) {
        var capabilities = next.capabilities
        if shared != nil || connection != nil {
            // A request may wait for a long time; as a slow operation it waits off the connection's
            // thread and the requests behind it keep flowing (into the same bucket).
            capabilities.slowOperations.formUnion([.read, .write])
        }
        self.next = next
        self.shared = shared
        self.connection = connection
        self.capabilities = capabilities
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if let shared { try await shared.pass(bytes: buffer.count, .read) }
        if let connection { try await connection.pass(bytes: buffer.count, .read) }
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if let shared { try await shared.pass(bytes: data.count, .write) }
        if let connection { try await connection.pass(bytes: data.count, .write) }
        try await next.write(data, at: offset, flags: flags)
    }
}

import NBDCore

/// nbdkit's noparallel filter for one connection: runs requests one at a time, to compare timings
/// with less parallelism, to work around a layer below that is not as concurrent as it claims, or for
/// a client that cannot take out-of-order replies.
///
/// ```swift
/// let shared = AsyncLock()
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in await NoParallelFilter(wrapping: next, mode: .allRequests, sharedLock: shared) }
/// ```
///
/// Waiting suspends the request's task; no thread blocks. The filter also declares no operation slow
/// or suspending (`Capabilities.slowOperations` and `suspendingOperations` are empty), so the server
/// runs every request in turn on the connection's thread and replies in request order, as nbdkit's
/// serialized thread models do.
public struct NoParallelFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities, with no slow or suspending operations, and without multi-conn in
    /// ``SerializeMode/connections`` mode.
    public let capabilities: Capabilities
    /// How much is serialized.
    public let mode: SerializeMode
    /// Held around every request: this connection's own lock, or in ``SerializeMode/allRequests`` mode
    /// the one all connections share.
    public let requestLock: AsyncLock
    /// Held from open to close in ``SerializeMode/connections`` mode.
    let connectionLock: AsyncLock?

    /// Wraps `next` for one connection. In ``SerializeMode/connections`` mode this waits until
    /// `sharedLock` is free and holds it until ``close()``; in ``SerializeMode/allRequests`` mode
    /// every request holds `sharedLock`. Give every connection of an export the same `sharedLock`.
    public init(wrapping next: Next, mode: SerializeMode = .requests, sharedLock: AsyncLock) async {
        var capabilities = next.capabilities
        capabilities.slowOperations = []
        capabilities.suspendingOperations = []
        switch mode {
        case .requests:
            requestLock = AsyncLock()
            connectionLock = nil
        case .allRequests:
            requestLock = sharedLock
            connectionLock = nil
        case .connections:
            await sharedLock.lock()
            requestLock = AsyncLock()
            connectionLock = sharedLock
            capabilities.canMultiConn = false
        }
        self.next = next
        self.mode = mode
        self.capabilities = capabilities
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        await requestLock.lock()
        defer { requestLock.unlock() }
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        await requestLock.lock()
        defer { requestLock.unlock() }
        try await next.write(data, at: offset, flags: flags)
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        await requestLock.lock()
        defer { requestLock.unlock() }
        try await next.zero(count: count, at: offset, flags: flags)
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        await requestLock.lock()
        defer { requestLock.unlock() }
        try await next.trim(count: count, at: offset, flags: flags)
    }

    @inlinable
    public func flush(flags: CommandFlags) async throws(NBDError) {
        await requestLock.lock()
        defer { requestLock.unlock() }
        try await next.flush(flags: flags)
    }

    @inlinable
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        await requestLock.lock()
        defer { requestLock.unlock() }
        try await next.cache(count: count, at: offset, flags: flags)
    }

    @inlinable
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        await requestLock.lock()
        defer { requestLock.unlock() }
        return try await next.extents(count: count, at: offset, flags: flags)
    }

    /// Closes the layer below, then lets the next client in (``SerializeMode/connections`` mode).
    public func close() async {
        await next.close()
        connectionLock?.unlock()
    }
}

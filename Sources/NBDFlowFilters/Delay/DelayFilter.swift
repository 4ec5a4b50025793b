import NBDCore

/// nbdkit's delay filter for one connection: waits before passing requests down, to simulate a slow
/// or distant server or to provoke races in a client.
///
/// ```swift
/// let delays = Delays(read: .milliseconds(100), write: .milliseconds(100))
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in try await DelayFilter.open(wrapping: next, delays: delays) }
/// ```
///
/// A delay suspends the request's task with `Task.sleep`; it never blocks a thread. Operations with a
/// delay are declared slow (``Delays/delayedOperations``), so the server runs them on its slow pool
/// and keeps reading the connection's next requests meanwhile: several requests wait at once, as on
/// nbdkit's worker threads. A zero delay is a comparison and nothing else.
///
/// A cancelled wait fails the request with `ESHUTDOWN`, as nbdkit's sleep does when the server stops.
public struct DelayFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with the delayed operations marked slow.
    public let capabilities: Capabilities
    /// The delays.
    public let delays: Delays
    /// How a delay is waited for: `Task.sleep`, or a recorder in tests.
    @usableFromInline let sleep: @Sendable (Duration) async throws(NBDError) -> Void

    /// Wraps `next` without waiting for ``Delays/open``; use ``open(wrapping:delays:)`` to wait.
    public init(wrapping next: Next, delays: Delays) {
        self.init(wrapping: next, delays: delays, sleep: Self.suspend)
    }

    /// Wraps `next` with a sleep function of the caller's (tests count delays without waiting).
    package init(
        wrapping next: Next, delays: Delays, sleep: @escaping @Sendable (Duration) async throws(NBDError) -> Void
    ) {
        var capabilities = next.capabilities
        capabilities.slowOperations.formUnion(delays.delayedOperations)
        self.next = next
        self.delays = delays
        self.capabilities = capabilities
        self.sleep = sleep
    }

    /// Waits for ``Delays/open``, then wraps `next`: nbdkit's `delay-open`.
    public static func open(wrapping next: Next, delays: Delays) async throws(NBDError) -> DelayFilter {
        if delays.open > .zero { try await suspend(delays.open) }
        return DelayFilter(wrapping: next, delays: delays)
    }

    /// Suspends the current task for `duration`; cancellation ends the wait with `ESHUTDOWN`.
    @Sendable
    static func suspend(_ duration: Duration) async throws(NBDError) {
        do {
            try await Task.sleep(for: duration)
        } catch {
            throw NBDError(.shutdown, "the delay filter's wait was interrupted: the server is stopping")
        }
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if delays.read > .zero { try await sleep(delays.read) }
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if delays.write > .zero { try await sleep(delays.write) }
        try await next.write(data, at: offset, flags: flags)
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if delays.zero > .zero {
            if flags.contains(.fastZero) && !delays.delaysFastZero {
                throw NBDError(.notSupported, "fast zero refused at once by the delay filter (delay-fast-zero=false)")
            }
            try await sleep(delays.zero)
        }
        try await next.zero(count: count, at: offset, flags: flags)
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if delays.trim > .zero { try await sleep(delays.trim) }
        try await next.trim(count: count, at: offset, flags: flags)
    }

    @inlinable
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if delays.cache > .zero { try await sleep(delays.cache) }
        try await next.cache(count: count, at: offset, flags: flags)
    }

    @inlinable
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        if delays.extents > .zero { try await sleep(delays.extents) }
        return try await next.extents(count: count, at: offset, flags: flags)
    }

    /// Waits for ``Delays/close``, then closes the layer below. Unlike nbdkit, which delays only a
    /// client's graceful disconnect, every close waits: the stack cannot tell the two apart.
    public func close() async {
        if delays.close > .zero { try? await sleep(delays.close) }
        await next.close()
    }
}

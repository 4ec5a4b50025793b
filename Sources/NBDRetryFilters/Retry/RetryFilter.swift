import NBDCore

/// nbdkit's retry filter for one connection: when a request fails, wait, close the whole stack below
/// this filter, open it again, and repeat the request, up to ``RetryConfiguration/retries`` times.
///
/// Every request is retried (read, write, zero, trim, flush, cache, extents), as in nbdkit; a failure
/// to reopen counts as a failed attempt (`ESHUTDOWN`). Before each attempt the request is checked
/// against what the reopened layer offers: past its end fails (`ENOSPC` for writes, `EIO` otherwise),
/// a write to a read-only reopen fails (`EPERM`), FUA where it has none fails (`EIO`). These failures
/// are retried too, since another reopen may bring the old layer back. The error of the last attempt
/// reaches the client.
///
/// Why repeating a request is safe: reads, cache and extents change nothing; a write, zero or trim
/// writes the same bytes to the same place however often it runs, and the NBD protocol leaves a
/// failed write's range unspecified, so a repeat can only complete it. The one request whose answer
/// depends on history is flush: it promises that writes acknowledged earlier are durable, and those
/// may have been cached by the backend that was closed. So a replaced backend that received writes
/// after its last successful flush is flushed before it is closed; if that flush fails, the next
/// flush the client sends fails with `EIO` instead of promising what is no longer true. A fast zero
/// that fails with `ENOTSUP` is not retried: that answer is the protocol's, not a fault.
///
/// Unlike nbdkit, which serializes every request of a connection that uses this filter, requests run
/// concurrently: a failing request replaces the backend for all of them, the others move to the new
/// one when they retry, and a replaced backend is closed after its last request returns.
///
/// Build it with ``open(for:configuration:below:)``, which receives the function that opens the
/// layer below (in a run-time stack, ``RetryLayer`` does this).
public struct RetryFilter<Next: BlockBackend>: Filter {
    /// The backend currently open below; after a failed reopen, the first one (which is closed).
    public var next: Next { session.current ?? first }
    public let capabilities: Capabilities
    /// The parameters.
    public let configuration: RetryConfiguration
    let session: RetrySession<Next>
    let first: Next

    init(first: Next, session: RetrySession<Next>, configuration: RetryConfiguration) {
        self.first = first
        self.session = session
        self.configuration = configuration
        self.capabilities = first.capabilities
    }

    /// Opens the layer below with `open` (retrying the open itself on failure, as nbdkit does) and
    /// returns the filter that reopens it with `open` whenever a request fails.
    public static func open(
        for connection: ConnectionInfo, configuration: RetryConfiguration,
        below openBelow: @escaping @Sendable (ConnectionInfo) async throws(NBDError) -> Next
    ) async throws(NBDError) -> RetryFilter {
        try await open(for: connection, configuration: configuration, canReopen: true, below: openBelow)
    }

    /// Wraps a backend that is already open: requests are retried on it, and it is never reopened.
    public init(wrapping next: Next, configuration: RetryConfiguration, connection: ConnectionInfo) {
        let session = RetrySession(
            first: next, connection: connection, reopensReadOnly: false, canReopen: false,
            open: { (_: ConnectionInfo) async throws(NBDError) in next })
        self.init(first: next, session: session, configuration: configuration)
    }

    static func open(
        for connection: ConnectionInfo, configuration: RetryConfiguration, canReopen: Bool,
        below openBelow: @escaping @Sendable (ConnectionInfo) async throws(NBDError) -> Next
    ) async throws(NBDError) -> RetryFilter {
        var failures = 0
        var below = connection
        while true {
            do {
                let first = try await openBelow(below)
                let session = RetrySession(
                    first: first, connection: connection, reopensReadOnly: configuration.reopensReadOnly,
                    canReopen: canReopen, failedOpens: failures, open: openBelow)
                return RetryFilter(first: first, session: session, configuration: configuration)
            } catch {
                guard failures < configuration.retries else { throw error }
                failures += 1
                try await pause(before: failures, configuration, after: error)
                if configuration.reopensReadOnly { below.isReadOnly = true }
            }
        }
    }

    /// How many times this connection reopened the layer below.
    public var reopenCount: Int { session.reopenCount }

    /// Waits before retry number `retry` (see ``RetryConfiguration/delay(before:)``); a cancelled task stops retrying
    /// and reports the original error.
    static func pause(before retry: Int, _ configuration: RetryConfiguration, after error: NBDError)
        async throws(NBDError)
    {
        do {
            try await Task.sleep(for: configuration.delay(before: retry))
        } catch {
            throw error as? NBDError ?? NBDError(.ioError, "retry cancelled")
        }
    }

    /// What a request does to the layer below, for the bookkeeping of unflushed writes.
    enum Effect {
        case none, writes, flushes
    }

    /// Runs `body` on the current backend; on failure waits, reopens and runs it again, up to the
    /// configured number of retries. `check` runs first against the backend's capabilities.
    func attempt<Result>(
        _ effect: Effect, retrying isRetried: (NBDError) -> Bool = { _ in true },
        check: (Capabilities) throws(NBDError) -> Void,
        _ body: (Next) async throws(NBDError) -> Result
    ) async throws(NBDError) -> Result {
        var failures = 0
        while true {
            if effect == .writes && configuration.reopensReadOnly && session.hasReopened {
                throw NBDError(.notPermitted, "the layer below was reopened read-only after a failure (retry-readonly)")
            }
            let lease = session.acquire()
            let error: NBDError
            if let lease {
                do {
                    try check(lease.backend.capabilities)
                    let result = try await body(lease.backend)
                    await session.release(lease, wrote: effect == .writes, flushed: effect == .flushes)
                    return result
                } catch let failure {
                    await session.release(lease)
                    error = failure
                }
            } else {
                error = NBDError(.shutdown, "the layer below could not be reopened")
            }
            guard failures < configuration.retries, isRetried(error) else { throw error }
            failures += 1
            try await Self.pause(before: failures, configuration, after: error)
            do {
                try await session.reopen(after: lease?.generation)
            } catch {
                // Counted as a failed attempt: the next round finds no backend and tries again.
            }
        }
    }

    /// Fails a request that reaches past the end of a (reopened) layer below.
    static func checkRange(count: UInt64, at offset: UInt64, writes: Bool, _ caps: Capabilities) throws(NBDError) {
        let (end, overflow) = offset.addingReportingOverflow(count)
        if overflow || end > caps.size {
            throw NBDError(
                writes ? .noSpace : .ioError,
                "\(count) bytes at \(offset) are past the end (\(caps.size)) of the reopened layer below")
        }
    }

    /// Fails a write-like request the (reopened) layer below cannot take.
    static func checkWritable(_ flags: CommandFlags, _ allowed: Bool, _ caps: Capabilities) throws(NBDError) {
        guard caps.isWritable && allowed else {
            throw NBDError(.notPermitted, "the reopened layer below does not accept this request")
        }
        if flags.contains(.fua) && caps.fua == .none {
            throw NBDError(.ioError, "the reopened layer below does not support FUA")
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await attempt(.none) { caps throws(NBDError) in
            try Self.checkRange(count: UInt64(buffer.count), at: offset, writes: false, caps)
        } _: { next throws(NBDError) in
            try await next.read(into: buffer, at: offset, flags: flags)
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await attempt(.writes) { caps throws(NBDError) in
            try Self.checkRange(count: UInt64(data.count), at: offset, writes: true, caps)
            try Self.checkWritable(flags, true, caps)
        } _: { next throws(NBDError) in
            try await next.write(data, at: offset, flags: flags)
        }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        // ENOTSUP is the protocol's answer to a fast zero that cannot be fast, not a fault: not retried.
        let fast = flags.contains(.fastZero)
        try await attempt(.writes, retrying: { !(fast && $0.code == .notSupported) }) { caps throws(NBDError) in
            if fast && !caps.canFastZero {
                throw NBDError(.notSupported, "the reopened layer below has no fast zero")
            }
            try Self.checkRange(count: count, at: offset, writes: true, caps)
            try Self.checkWritable(flags, caps.canZero, caps)
        } _: { next throws(NBDError) in
            try await next.zero(count: count, at: offset, flags: flags)
        }
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await attempt(.writes) { caps throws(NBDError) in
            try Self.checkRange(count: count, at: offset, writes: true, caps)
            try Self.checkWritable(flags, caps.canTrim, caps)
        } _: { next throws(NBDError) in
            try await next.trim(count: count, at: offset, flags: flags)
        }
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try await attempt(.flushes) { _ throws(NBDError) in
        } _: { next throws(NBDError) in
            try await next.flush(flags: flags)
        }
        if session.takeLostWrites() {
            throw NBDError(
                .ioError, "writes cached by the layer below before it was reopened could not be flushed and may be lost"
            )
        }
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await attempt(.none) { caps throws(NBDError) in
            try Self.checkRange(count: count, at: offset, writes: false, caps)
        } _: { next throws(NBDError) in
            try await next.cache(count: count, at: offset, flags: flags)
        }
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try await attempt(.none) { caps throws(NBDError) in
            try Self.checkRange(count: count, at: offset, writes: false, caps)
        } _: { next throws(NBDError) in
            try await next.extents(count: count, at: offset, flags: flags)
        }
    }

    public func close() async {
        await session.closeAll()
    }
}

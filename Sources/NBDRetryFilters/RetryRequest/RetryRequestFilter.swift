import NBDCore

/// nbdkit's retry-request filter for one connection: a request that fails is sent again to the same
/// layer below, after ``RetryRequestConfiguration/delay``, up to ``RetryRequestConfiguration/retries``
/// times; the last error reaches the client. Lighter than ``RetryFilter``: nothing is reopened.
///
/// Every request is retried (read, write, zero, trim, flush, cache, extents), which is safe for the
/// reasons ``RetryFilter`` gives (each request has the same effect however often it runs; the layer
/// below is the same one, so a flush still covers every earlier write), except a fast zero answered
/// with `ENOTSUP`, which is the protocol's answer rather than a fault.
public struct RetryRequestFilter<Next: BlockBackend>: Filter {
    public let next: Next
    /// The parameters.
    public let configuration: RetryRequestConfiguration

    /// Wraps `next`.
    public init(wrapping next: Next, configuration: RetryRequestConfiguration) {
        self.next = next
        self.configuration = configuration
    }

    /// Opens the layer below with `open`, retrying the open itself if
    /// ``RetryRequestConfiguration/retriesOpen`` is set, and wraps it.
    public static func open(
        for connection: ConnectionInfo, configuration: RetryRequestConfiguration,
        below open: @Sendable (ConnectionInfo) async throws(NBDError) -> Next
    ) async throws(NBDError) -> RetryRequestFilter {
        var failures = 0
        while true {
            do {
                return RetryRequestFilter(wrapping: try await open(connection), configuration: configuration)
            } catch {
                guard configuration.retriesOpen, failures < configuration.retries else { throw error }
                failures += 1
                try await pause(configuration.delay, after: error)
            }
        }
    }

    static func pause(_ delay: Duration, after error: NBDError) async throws(NBDError) {
        do {
            try await Task.sleep(for: delay)
        } catch {
            // Cancelled: stop retrying and report the original failure.
            throw error as? NBDError ?? NBDError(.ioError, "retry cancelled")
        }
    }

    /// Runs `body`, and again after each failure that `isRetried` accepts, up to the configured count.
    func attempt<Result>(
        retrying isRetried: (NBDError) -> Bool = { _ in true }, _ body: () async throws(NBDError) -> Result
    ) async throws(NBDError) -> Result {
        do {
            // The first attempt is the whole cost when nothing fails.
            return try await body()
        } catch {
            var last = error
            var failures = 0
            while failures < configuration.retries && isRetried(last) {
                failures += 1
                try await Self.pause(configuration.delay, after: last)
                do {
                    return try await body()
                } catch {
                    last = error
                }
            }
            throw last
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await attempt { () async throws(NBDError) in try await next.read(into: buffer, at: offset, flags: flags) }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await attempt { () async throws(NBDError) in try await next.write(data, at: offset, flags: flags) }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let fast = flags.contains(.fastZero)
        try await attempt(retrying: { !(fast && $0.code == .notSupported) }) { () async throws(NBDError) in
            try await next.zero(count: count, at: offset, flags: flags)
        }
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await attempt { () async throws(NBDError) in try await next.trim(count: count, at: offset, flags: flags) }
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try await attempt { () async throws(NBDError) in try await next.flush(flags: flags) }
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await attempt { () async throws(NBDError) in try await next.cache(count: count, at: offset, flags: flags) }
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try await attempt { () async throws(NBDError) in try await next.extents(count: count, at: offset, flags: flags)
        }
    }
}

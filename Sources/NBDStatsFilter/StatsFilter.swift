import NBDCore

/// nbdkit's stats filter for one connection: times every request that passes through it and counts
/// the successful ones, with their bytes, size and alignment, into a ``StatsCollector`` shared by all
/// connections. Failed requests are counted apart, by error code. Capabilities and data pass through
/// unchanged.
///
/// ```swift
/// let stats = StatsCollector()
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in StatsFilter(wrapping: next, collector: stats) }
/// ```
///
/// Place it where the requests to be counted pass: as in nbdkit, filters listed after it (closer to the
/// backend) are measured, and it counts what the filters before it send down.
public struct StatsFilter<Next: BlockBackend>: Filter {
    /// The layer below, whose requests are timed.
    public let next: Next
    /// Where this connection's counts go.
    public let collector: StatsCollector
    @usableFromInline let counters: ConnectionCounters
    @usableFromInline let clock: StatsClock

    /// Wraps `next` and registers the connection's counters with `collector`, counted under
    /// `exportName` (the export the client asked for; ``StatsCollector/exportSnapshots()`` separates
    /// exports).
    public init(wrapping next: Next, collector: StatsCollector, exportName: String = "") {
        self.next = next
        self.collector = collector
        self.clock = collector.clock
        self.counters = collector.register(export: exportName)
    }

    @inlinable
    func succeeded(_ operation: StatsOperation, _ count: UInt64, _ offset: UInt64, since start: UInt64) {
        let end = clock.now()
        counters.recordSuccess(operation, count: count, offset: offset, nanoseconds: end >= start ? end - start : 0)
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        let start = clock.now()
        do {
            try await next.read(into: buffer, at: offset, flags: flags)
        } catch {
            counters.recordFailure(.read, error.code)
            throw error
        }
        succeeded(.read, UInt64(buffer.count), offset, since: start)
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let start = clock.now()
        do {
            try await next.write(data, at: offset, flags: flags)
        } catch {
            counters.recordFailure(.write, error.code)
            throw error
        }
        succeeded(.write, UInt64(data.count), offset, since: start)
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let start = clock.now()
        do {
            try await next.zero(count: count, at: offset, flags: flags)
        } catch {
            counters.recordFailure(.zero, error.code)
            throw error
        }
        succeeded(.zero, count, offset, since: start)
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let start = clock.now()
        do {
            try await next.trim(count: count, at: offset, flags: flags)
        } catch {
            counters.recordFailure(.trim, error.code)
            throw error
        }
        succeeded(.trim, count, offset, since: start)
    }

    @inlinable
    public func flush(flags: CommandFlags) async throws(NBDError) {
        let start = clock.now()
        do {
            try await next.flush(flags: flags)
        } catch {
            counters.recordFailure(.flush, error.code)
            throw error
        }
        succeeded(.flush, 0, 0, since: start)
    }

    @inlinable
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let start = clock.now()
        do {
            try await next.cache(count: count, at: offset, flags: flags)
        } catch {
            counters.recordFailure(.cache, error.code)
            throw error
        }
        succeeded(.cache, count, offset, since: start)
    }

    /// Counts the requested range as the bytes, as nbdkit does: what the reply covers depends on the
    /// flags and on the layer below.
    @inlinable
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let start = clock.now()
        let extents: [Extent]
        do {
            extents = try await next.extents(count: count, at: offset, flags: flags)
        } catch {
            counters.recordFailure(.extents, error.code)
            throw error
        }
        succeeded(.extents, count, offset, since: start)
        return extents
    }

    /// Closes the layer below, then folds this connection's counts into the collector's retained total.
    public func close() async {
        await next.close()
        collector.retire(counters)
    }
}

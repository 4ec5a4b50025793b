import CoreMetrics
import NBDCore

/// One connection's ``MetricsLayer`` filter: times every request and reports it to the layer's
/// metrics. Capabilities and data pass through unchanged.
struct MetricsFilter<Next: BlockBackend>: Filter {
    let next: Next
    let metrics: ExportMetrics

    init(wrapping next: Next, metrics: ExportMetrics) {
        self.next = next
        self.metrics = metrics
        metrics.connections.increment()
        metrics.connectionsOpened.increment()
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        let start = ContinuousClock.now
        do {
            try await next.read(into: buffer, at: offset, flags: flags)
        } catch {
            metrics.read.failed(error.code)
            throw error
        }
        metrics.read.succeeded(bytes: UInt64(buffer.count), since: start)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let start = ContinuousClock.now
        do {
            try await next.write(data, at: offset, flags: flags)
        } catch {
            metrics.write.failed(error.code)
            throw error
        }
        metrics.write.succeeded(bytes: UInt64(data.count), since: start)
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let start = ContinuousClock.now
        do {
            try await next.zero(count: count, at: offset, flags: flags)
        } catch {
            metrics.zero.failed(error.code)
            throw error
        }
        metrics.zero.succeeded(bytes: count, since: start)
    }

    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let start = ContinuousClock.now
        do {
            try await next.trim(count: count, at: offset, flags: flags)
        } catch {
            metrics.trim.failed(error.code)
            throw error
        }
        metrics.trim.succeeded(bytes: count, since: start)
    }

    func flush(flags: CommandFlags) async throws(NBDError) {
        let start = ContinuousClock.now
        do {
            try await next.flush(flags: flags)
        } catch {
            metrics.flush.failed(error.code)
            throw error
        }
        metrics.flush.succeeded(bytes: 0, since: start)
    }

    func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let start = ContinuousClock.now
        do {
            try await next.cache(count: count, at: offset, flags: flags)
        } catch {
            metrics.cache.failed(error.code)
            throw error
        }
        metrics.cache.succeeded(bytes: count, since: start)
    }

    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let start = ContinuousClock.now
        let extents: [Extent]
        do {
            extents = try await next.extents(count: count, at: offset, flags: flags)
        } catch {
            metrics.extents.failed(error.code)
            throw error
        }
        metrics.extents.succeeded(bytes: count, since: start)
        return extents
    }

    /// Closes the layer below, then counts the connection as closed.
    func close() async {
        await next.close()
        metrics.connections.decrement()
    }
}

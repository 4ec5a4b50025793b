import NBDCore

/// nbdkit's readahead filter for one connection: after each read, asks the layer below to cache
/// what the client is likely to read next (see `ReadAheadWindow`), in the background.
///
/// The client's read is sent down at once and never waits for a prefetch. The prefetch is an
/// `NBD_CMD_CACHE` request, so the filter helps only over a layer that caches natively, such as
/// the cache filter (`--filter=readahead --filter=cache`); over anything else it does nothing.
public struct ReadAheadFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    private let window: ReadAheadWindow
    private let queue: PrefetchQueue?

    /// Wraps `next` for one connection, sharing `layer`'s window and prefetch thread with the
    /// other connections.
    public init(wrapping next: Next, sharing layer: ReadAheadLayer) {
        self.init(wrapping: next, window: layer.window, thread: layer.thread)
    }

    /// Wraps `next`, prefetching on `thread` with the shared `window`.
    package init(wrapping next: Next, window: ReadAheadWindow, thread: PrefetchThread) {
        self.next = next
        self.window = window
        // As nbdkit: without native cache support below, prefetching would do nothing useful.
        if next.capabilities.cache == .native {
            queue = PrefetchQueue(executor: thread) { offset, count in
                // A failed prefetch costs only speed; the client's own read reports real errors.
                try? await next.cache(count: count, at: offset, flags: [])
            }
        } else {
            queue = nil
        }
    }

    /// Whether prefetching is on (the layer below caches natively).
    public var isPrefetching: Bool { queue != nil }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if let queue,
            let range = window.afterRead(count: UInt64(buffer.count), at: offset, exportSize: capabilities.size)
        {
            queue.submit(offset: range.offset, count: range.count)
        }
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    /// Waits for a running prefetch to finish (it uses the layer below), then closes the layer below.
    public func close() async {
        await queue?.close()
        await next.close()
    }
}

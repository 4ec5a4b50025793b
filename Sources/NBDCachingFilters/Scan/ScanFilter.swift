import NBDCore

/// nbdkit's scan filter for one connection: while clients are connected, a background task
/// prefetches the whole disk with cache requests, staying ahead of the clients' reads, so a client
/// that reads the disk in order finds it cached. Useful only over a layer that caches (put
/// `--filter=cache` after it), as in nbdkit.
///
/// ```swift
/// let scan = ScanCoordinator(settings: ScanSettings())
/// let layer = ScanLayer(coordinator: scan)   // a FilterLayer; the scan needs the run-time stack
/// ```
///
/// Requests themselves pass through unchanged; reads tell the scan where the client is.
public struct ScanFilter: Filter {
    /// The layer below.
    public let next: AnyBlockBackend
    /// The export's scan.
    public let coordinator: ScanCoordinator
    /// This connection.
    public let connection: UInt64

    /// Wraps `next` for `connection`, starting the scan through it if none runs.
    public init(wrapping next: AnyBlockBackend, coordinator: ScanCoordinator, connection: UInt64) {
        self.next = next
        self.coordinator = coordinator
        self.connection = connection
        coordinator.connected(connection, below: next)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        coordinator.clientRead(count: UInt64(buffer.count), at: offset)
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    /// Ends this connection's part in the scan, then closes the layer below.
    public func close() async {
        await coordinator.disconnecting(connection)
        await next.close()
    }
}

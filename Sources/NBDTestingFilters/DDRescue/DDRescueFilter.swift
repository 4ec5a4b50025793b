import NBDCore

/// nbdkit's ddrescue filter for one connection: serves a disk image recovered by GNU ddrescue so
/// that reads touching any block its mapfile does not mark rescued (`+`) fail with `EIO`, as the
/// original disk's bad sectors did, instead of returning the zeroes ddrescue left there.
///
/// ```swift
/// let map = try RescueMap(contentsOf: "disk.map")
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in DDRescueFilter(wrapping: next, map: map) }
/// ```
///
/// The export is read-only and does not advertise cache, as in nbdkit.
public struct DDRescueFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// Read-only capabilities without cache.
    public let capabilities: Capabilities
    /// The rescued ranges.
    public let map: RescueMap

    /// Wraps `next`.
    public init(wrapping next: Next, map: RescueMap) {
        var capabilities = next.capabilities.readOnly
        capabilities.cache = .none
        self.next = next
        self.map = map
        self.capabilities = capabilities
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        guard map.isRescued(count: UInt64(buffer.count), at: offset) else {
            throw NBDError(
                .ioError,
                "ddrescue: the read of \(buffer.count) bytes at offset \(offset) touches blocks the mapfile does not mark rescued")
        }
        try await next.read(into: buffer, at: offset, flags: flags)
    }
}

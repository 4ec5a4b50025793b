import NBDCore

/// nbdkit's cacheextents filter for one connection (deprecated in nbdkit 1.44, kept for the
/// command lines that use it): remembers the last block status answer, asked of the layer below
/// without `NBD_CMD_FLAG_REQ_ONE` so that it holds as much as the layer below will give, and
/// answers requests that start inside it from memory. Helps a client that walks an export one
/// extent at a time (`qemu-img convert`) over a layer whose every block status call is slow.
///
/// ```swift
/// let cache = CachedExtents()
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in CacheExtentsFilter(wrapping: next, cache: cache) }
/// ```
///
/// Writes, zeroes and trims forget the cached answer before they pass down.
public struct CacheExtentsFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The answer every connection of the export shares.
    public let cache: CachedExtents

    /// Wraps `next`, sharing `cache` with the export's other connections.
    public init(wrapping next: Next, cache: CachedExtents) {
        self.next = next
        self.cache = cache
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        cache.invalidate()
        try await next.write(data, at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        cache.invalidate()
        try await next.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        cache.invalidate()
        try await next.trim(count: count, at: offset, flags: flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        if let cached = cache.lookup(at: offset) { return cached }
        var askFlags = flags
        askFlags.remove(.requestOne)
        let extents = try await next.extents(count: count, at: offset, flags: askFlags)
        cache.store(extents, at: offset)
        return extents
    }
}

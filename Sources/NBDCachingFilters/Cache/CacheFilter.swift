import NBDCore

/// nbdkit's cache filter for one connection: a local cache of the layer below, in a sparse,
/// unlinked temporary file shared by every connection of the export (see ``CacheStore``).
///
/// ```swift
/// let store = try CacheStore(exportSize: 1 << 30, configuration: CacheConfiguration(mode: .writeback))
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in CacheFilter(wrapping: next, store: store) }
/// ```
///
/// - `writeback`: writes stay in the cache until a flush or a FUA write; a flush on any connection
///   writes back every dirty block and then flushes the layer below.
/// - `writethrough`: every write reaches the layer below before the reply.
/// - `unsafe`: flushes and FUA are answered at once; writes reach the layer below only when the
///   cache must make room.
///
/// Capabilities, as nbdkit: native cache requests; fast zero advertised and always refused with
/// `ENOTSUP` (a zero is written like data); flush and native FUA always in unsafe mode; multi-conn
/// unless in writethrough mode, where it is the layer below's (and, unlike nbdkit, also the layer
/// below's when `cache-max-size` makes the cache reclaim blocks). Trim passes through, as in nbdkit.
/// Block status reports dirty blocks as data, whatever the layer below says (nbdkit passes block
/// status through unchanged; see `Documentation/CachingFilters.md`).
public struct CacheFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The capabilities the cache advertises over the layer below.
    public let capabilities: Capabilities
    /// The cache shared by every connection of the export.
    public let store: CacheStore
    private let fuaBelow: Bool
    private let flushAfterFUA: Bool

    /// Wraps `next` for one connection, using the `store` every connection of the export shares.
    public init(wrapping next: Next, store: CacheStore) {
        self.next = next
        self.store = store
        let below = next.capabilities
        let mode = store.configuration.mode
        fuaBelow = below.fua == .native
        // FUA becomes a flush afterwards when the layer below only emulates FUA (nbdkit's rule); in
        // unsafe mode that flush is the no-op flush.
        flushAfterFUA = mode != .unsafe && below.fua == .emulated
        capabilities = Self.capabilities(
            mode: mode, blockSize: store.blockSize, reclaims: store.configuration.maximumSize != nil, below: below)
    }

    static func capabilities(mode: CacheMode, blockSize: Int, reclaims: Bool, below: Capabilities) -> Capabilities {
        var caps = below
        caps.cache = .native
        caps.canFastZero = below.canZero
        if mode == .unsafe && below.isWritable {
            caps.canFlush = true
            caps.fua = .native
        }
        // Writeback: one connection's flush writes back every connection's dirty blocks. Unsafe: the
        // cache is one for all and flushes are no-ops. Writethrough relies on the layer below, and so
        // does a cache that reclaims: an evicted block is read again through the reading connection,
        // which may hold an older copy than the one the evicting connection wrote back.
        caps.canMultiConn = mode == .writethrough || reclaims ? below.canMultiConn : true
        if below.blockSize.maximumPayload >= UInt32(blockSize) {
            caps.blockSize.preferred = max(below.blockSize.preferred, UInt32(blockSize))
        }
        // Flushes write dirty blocks back and cache requests read below: as slow as the layer below.
        caps.slowOperations.formUnion([.flush, .cache])
        if mode == .unsafe { caps.slowOperations.remove(.fuaRequests) }
        return caps
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await store.read(into: buffer, at: offset, next: next)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let fua = flags.contains(.fua)
        try await store.write(data, count: data.count, at: offset, fua: fua, fuaBelow: fuaBelow, next: next)
        // The NBD spec requires the FUA reply to wait until the data is durable.
        if fua && flushAfterFUA { try await store.flush(next: next) }
    }

    /// Writes zeroes into the cache like data (nbdkit never sends a zero request down from here, so
    /// a zero is never faster than a write, and a fast zero is refused).
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if flags.contains(.fastZero) {
            throw NBDError(.notSupported, "cache: a zero request is written like data, so it is not fast")
        }
        let fua = flags.contains(.fua)
        try await store.write(nil, count: Int(count), at: offset, fua: fua, fuaBelow: fuaBelow, next: next)
        if fua && flushAfterFUA { try await store.flush(next: next) }
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        // Unsafe mode ignores flushes: that is its whole point.
        guard store.configuration.mode != .unsafe else { return }
        try await store.flush(next: next)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await store.prefetch(count: count, at: offset, next: next)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let below = try await next.extents(count: count, at: offset, flags: flags)
        let dirty = store.dirtyOverrides(count: count, at: offset)
        guard !dirty.isEmpty else { return below }
        return ExtentOverlay.apply(dirty, to: below, start: offset, count: count)
    }
}

import NBDCore
import Synchronization

/// The last block status answer of an export, shared by every connection as nbdkit's cacheextents
/// keeps one: a request that starts inside it is answered from it; any write, zero or trim forgets it.
public final class CachedExtents: Sendable {
    private struct Entry {
        var start: UInt64
        var extents: [Extent]
        var end: UInt64
    }

    private let entry = LockedValue<Entry?>(nil)

    /// An empty cache.
    public init() {}

    /// The cached extents from `offset` on, if the cache covers `offset`.
    public func lookup(at offset: UInt64) -> [Extent]? {
        entry.withLock { entry -> [Extent]? in
            guard let entry, offset >= entry.start, offset < entry.end else { return nil }
            var skip = offset - entry.start
            var result: [Extent] = []
            result.reserveCapacity(entry.extents.count)
            for extent in entry.extents {
                if skip >= extent.length {
                    skip -= extent.length
                    continue
                }
                result.append(Extent(length: extent.length - skip, flags: extent.flags))
                skip = 0
            }
            return result
        }
    }

    /// Remembers `extents` as the answer for the range starting at `offset`.
    public func store(_ extents: [Extent], at offset: UInt64) {
        let length = extents.reduce(0 as UInt64) { $0 + $1.length }
        guard length > 0 else { return }
        entry.withLock { $0 = Entry(start: offset, extents: extents, end: offset + length) }
    }

    /// Forgets the cached answer.
    public func invalidate() {
        entry.withLock { $0 = nil }
    }
}

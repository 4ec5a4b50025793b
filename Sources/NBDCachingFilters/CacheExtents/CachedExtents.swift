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
        var length: UInt64 = 0
        for extent in extents {
            let (sum, overflow) = length.addingReportingOverflow(extent.length)
            // Lengths past 2^64 cannot be a real answer: keep nothing.
            guard !overflow else { return }
            length = sum
        }
        guard length > 0, offset <= UInt64.max - length else { return }
        entry.withLock { $0 = Entry(start: offset, extents: extents, end: offset + length) }
    }

    /// Forgets the cached answer.
    public func invalidate() {
        entry.withLock { $0 = nil }
    }
}

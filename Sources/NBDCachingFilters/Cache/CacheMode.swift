import NBDCore

/// How the cache filter treats writes and flushes: nbdkit's `cache=` parameter.
public enum CacheMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Writes stay in the cache until a flush or a FUA write sends them to the layer below. The
    /// default; safe with clients that flush (every modern NBD client does).
    case writeback
    /// Every write reaches the layer below before it is acknowledged.
    case writethrough
    /// Flushes are ignored and FUA is answered at once: writes reach the layer below only when the
    /// cache must make room. Fast, and **loses data** if the server stops.
    case unsafe

    public var description: String { rawValue }
}

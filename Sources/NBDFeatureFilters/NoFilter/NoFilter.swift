import NBDCore

/// nbdkit's nofilter filter for one connection: passes every request and capability through
/// unchanged. It exists for testing a stack (a filter position that does nothing) and costs one
/// inlined call in a static stack.
///
/// ```swift
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in NoFilter(wrapping: next) }
/// ```
public struct NoFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next

    /// Wraps `next`.
    @inlinable
    public init(wrapping next: Next) {
        self.next = next
    }
}

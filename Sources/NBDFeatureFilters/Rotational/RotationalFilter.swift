import NBDCore

/// nbdkit's rotational filter for one connection: sets or clears the rotational property
/// (`NBD_FLAG_ROTATIONAL`), the hint that the storage behaves like a spinning disk and that a client
/// should order its requests to reduce seeking. The data path is untouched.
///
/// ```swift
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in RotationalFilter(wrapping: next, isRotational: true) }
/// ```
public struct RotationalFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with the chosen rotational property.
    public let capabilities: Capabilities

    /// Wraps `next`, advertising `isRotational` (nbdkit's default, when the filter is used, is `true`).
    public init(wrapping next: Next, isRotational: Bool = true) {
        var capabilities = next.capabilities
        capabilities.isRotational = isRotational
        self.next = next
        self.capabilities = capabilities
    }
}

import NBDCore

/// nbdkit's noextents filter for one connection: hides allocation information, so the export looks
/// fully allocated to clients (useful over file systems with slow `lseek(SEEK_DATA)`, such as tmpfs).
///
/// ```swift
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in NoExtentsFilter(wrapping: next) }
/// ```
///
/// The server answers block status for a layer that does not report extents itself, with one
/// allocated data extent, and never asks the layers below.
public struct NoExtentsFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities without extents.
    public let capabilities: Capabilities

    /// Wraps `next`.
    public init(wrapping next: Next) {
        var capabilities = next.capabilities
        capabilities.canExtents = false
        capabilities.slowOperations.remove(.extents)
        self.next = next
        self.capabilities = capabilities
    }

    /// All data: called only by a caller that ignores ``capabilities``.
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.data(count)]
    }
}

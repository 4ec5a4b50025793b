import NBDCore

/// nbdkit's extentlist filter for one connection: answers block status from a static
/// ``ExtentList`` instead of the layer below, for layers that cannot tell allocation themselves
/// (ssh, curl) when the map is known from elsewhere.
///
/// ```swift
/// let list = try ExtentList(contentsOf: "disk.extents")
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in ExtentListFilter(wrapping: next, list: list) }
/// ```
///
/// The list is not updated by writes: a write to a listed hole still reads back, but a client that
/// trusts block status may skip it. Use it read-only, as nbdkit advises.
public struct ExtentListFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with block status.
    public let capabilities: Capabilities
    /// The map.
    public let list: ExtentList

    /// Wraps `next`, answering block status from `list`.
    public init(wrapping next: Next, list: ExtentList) {
        var capabilities = next.capabilities
        capabilities.canExtents = true
        capabilities.slowOperations.remove(.extents)
        capabilities.suspendingOperations.remove(.extents)
        self.next = next
        self.list = list
        self.capabilities = capabilities
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        list.extents(count: count, at: offset)
    }
}

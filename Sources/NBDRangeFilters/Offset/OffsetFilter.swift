import NBDCore

/// nbdkit's offset filter for one connection: serves the bytes `[offset, offset + range)` of the
/// layer below as a whole export, so a client sees one part of a disk (a partition, say) as the disk.
///
/// ```swift
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in try OffsetFilter(wrapping: next, offset: 1 << 20, range: 100 << 20) }
/// ```
///
/// Every request is moved up by ``offset``; block status lengths need no change. The server checks
/// requests against the smaller size this filter reports, so the layer below never sees a request
/// outside the window.
public struct OffsetFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with the size of the window.
    public let capabilities: Capabilities
    /// Where the window starts in the layer below.
    public let offset: UInt64

    /// Serves `range` bytes of `next` starting at `offset`; without `range`, everything from `offset`
    /// to the end of `next`.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the window does not lie within the layer below: nbdkit
    ///   refuses the connection in that case too.
    public init(wrapping next: Next, offset: UInt64 = 0, range: UInt64? = nil) throws(NBDError) {
        let below = next.capabilities
        guard offset <= below.size else {
            throw NBDError(
                .invalidArgument,
                "offset=\(offset) lies beyond the end of the layer below (\(below.size) bytes); use the truncate filter to make it larger"
            )
        }
        let available = below.size - offset
        if let range, range > available {
            throw NBDError(
                .invalidArgument,
                "offset=\(offset) range=\(range) ends at \(offset + range), beyond the end of the layer below (\(below.size) bytes)"
            )
        }
        var capabilities = below
        capabilities.size = range ?? available
        self.next = next
        self.offset = offset
        self.capabilities = capabilities
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await next.read(into: buffer, at: offset + self.offset, flags: flags)
    }

    /// Moved up like a read: the layer below's file region of the same bytes, if it has one.
    public func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? {
        guard count >= 0, offset <= capabilities.size, UInt64(count) <= capabilities.size - offset else { return nil }
        return await next.fileRegion(count: count, at: offset + self.offset)
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await next.write(data, at: offset + self.offset, flags: flags)
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.zero(count: count, at: offset + self.offset, flags: flags)
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.trim(count: count, at: offset + self.offset, flags: flags)
    }

    @inlinable
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.cache(count: count, at: offset + self.offset, flags: flags)
    }

    @inlinable
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        // Extents carry lengths, not offsets, so the answer for the moved range is already right.
        try await next.extents(count: count, at: offset + self.offset, flags: flags)
    }
}

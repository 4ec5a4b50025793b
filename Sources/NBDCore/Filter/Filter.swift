/// A layer that wraps the next layer of one connection's stack and may rewrite any operation or
/// capability. Everything a filter does not implement passes straight through to ``next``.
///
/// Write a filter as a generic type over its `Next`, so that a stack fixed in code is one concrete,
/// nested type the compiler can inline:
///
/// ```swift
/// struct ReadOnlyFilter<Next: BlockBackend>: Filter {
///     let next: Next
///     var capabilities: Capabilities { next.capabilities.readOnly }
/// }
/// ```
///
/// To offer the filter to stacks built at run time, also provide a ``FilterLayer``.
///
/// One operation does not pass through: ``BlockBackend/fileRegion(count:at:)`` is `nil` unless the
/// filter implements it, because a filter that changes or observes read data must not let the
/// server send the bytes straight from the file below it.
public protocol Filter: BlockBackend {
    /// The layer this filter wraps.
    associatedtype Next: BlockBackend
    /// The layer this filter wraps.
    var next: Next { get }
}

extension Filter {
    /// Passes through: the layer below's capabilities.
    @inlinable
    public var capabilities: Capabilities { next.capabilities }

    /// Passes through: reads from the layer below.
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    /// Passes through: writes to the layer below.
    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await next.write(data, at: offset, flags: flags)
    }

    /// Passes through: zeroes in the layer below.
    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.zero(count: count, at: offset, flags: flags)
    }

    /// Passes through: trims in the layer below.
    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.trim(count: count, at: offset, flags: flags)
    }

    /// Passes through: flushes the layer below.
    @inlinable
    public func flush(flags: CommandFlags) async throws(NBDError) {
        try await next.flush(flags: flags)
    }

    /// Passes through: asks the layer below to cache the range.
    @inlinable
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.cache(count: count, at: offset, flags: flags)
    }

    /// Passes through: the layer below's extents.
    @inlinable
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try await next.extents(count: count, at: offset, flags: flags)
    }

    /// Passes through: closes the layer below.
    @inlinable
    public func close() async {
        await next.close()
    }

    /// Passes through: the layer below's export description.
    @inlinable
    public var exportDescription: String? { next.exportDescription }
}

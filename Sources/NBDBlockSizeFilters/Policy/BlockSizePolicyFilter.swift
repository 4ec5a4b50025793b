import NBDCore

/// nbdkit's blocksize-policy filter for one connection: advertises block size constraints the layer
/// below does not state, and decides what happens to requests that break them (see
/// ``BlockSizeErrorPolicy``).
///
/// The server is told not to enforce the minimum itself (`BlockSizeConstraints.isEnforced` is
/// `false`), as nbdkit's server does not: with ``BlockSizeErrorPolicy/allow`` a misaligned request
/// reaches the layer below (a ``BlockSizeFilter`` there turns it into aligned ones); with
/// ``BlockSizeErrorPolicy/error`` this filter fails it with `EINVAL`.
///
/// ```swift
/// // Advertise 4 KiB blocks and fail requests that ignore them.
/// let export = try MemoryBackendProvider(size: 1 << 30).wrapped { next, _ in
///     try BlockSizePolicyFilter(wrapping: next, configuration: .init(minimum: 4096, errorPolicy: .error))
/// }
/// ```
public struct BlockSizePolicyFilter<Next: BlockBackend>: Filter {
    public let next: Next
    public let capabilities: Capabilities
    /// The parameters this connection uses.
    public let configuration: BlockSizePolicyConfiguration
    /// The alignment the layer below requires the server to enforce (1 when it requires none).
    /// Turning the server's check off must not hand the layer below requests it declared invalid.
    @usableFromInline let requiredBelow: UInt64

    /// Wraps `next`, computing the advertised constraints as nbdkit does: the configured values where
    /// given, the layer below's otherwise (or 1, 4096 and 4 GiB − 1 when the layer below states none).
    ///
    /// - Throws: `EINVAL` when the result breaks minimum ≤ preferred ≤ maximum (nbdkit fails the
    ///   connection the same way).
    public init(wrapping next: Next, configuration: BlockSizePolicyConfiguration) throws(NBDError) {
        self.next = next
        self.configuration = configuration
        var caps = next.capabilities
        let below = caps.blockSize
        requiredBelow = below.isEnforced ? UInt64(max(below.minimum, 1)) : 1
        caps.blockSize = try configuration.advertised(below: below)
        // The filter checks requests itself, so it needs extents requests too (nbdkit does the same):
        // a layer without allocation information answers "all data".
        caps.canExtents = true
        self.capabilities = caps
    }

    /// Throws `EINVAL` if the policy rejects a request of `count` bytes at `offset`.
    @inlinable
    func check(_ operation: StaticString, count: UInt64, at offset: UInt64, carriesData: Bool) throws(NBDError) {
        guard configuration.errorPolicy != .allow else {
            if requiredBelow > 1 && (offset % requiredBelow != 0 || count % requiredBelow != 0) {
                throw NBDError(
                    .invalidArgument,
                    "\(operation) at offset \(offset), length \(count) is not aligned to the layer below's minimum block size \(requiredBelow)"
                )
            }
            return
        }
        let minimum = UInt64(capabilities.blockSize.minimum)
        var length = count
        // An export whose size is not a multiple of the minimum still lets `error` reach its last bytes.
        if configuration.errorPolicy == .error && offset + count == capabilities.size {
            length = (count + minimum - 1) / minimum * minimum
        }
        if offset % minimum != 0 {
            throw NBDError(
                .invalidArgument,
                "\(operation) rejected: offset \(offset) is not a multiple of the minimum block size \(minimum)")
        }
        if length < minimum {
            throw NBDError(
                .invalidArgument, "\(operation) rejected: \(count) bytes is less than the minimum block size \(minimum)"
            )
        }
        if carriesData && count > UInt64(capabilities.blockSize.maximumPayload) {
            throw NBDError(
                .invalidArgument,
                "\(operation) rejected: \(count) bytes is more than the maximum block size \(capabilities.blockSize.maximumPayload)"
            )
        }
        if length % minimum != 0 {
            throw NBDError(
                .invalidArgument,
                "\(operation) rejected: \(count) bytes is not a multiple of the minimum block size \(minimum)")
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try check("read", count: UInt64(buffer.count), at: offset, carriesData: true)
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check("write", count: UInt64(data.count), at: offset, carriesData: true)
        try await next.write(data, at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check("zero", count: count, at: offset, carriesData: false)
        try await next.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check("trim", count: count, at: offset, carriesData: false)
        try await next.trim(count: count, at: offset, flags: flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check("cache", count: count, at: offset, carriesData: false)
        try await next.cache(count: count, at: offset, flags: flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try check("block status", count: count, at: offset, carriesData: false)
        let extents = try await next.extents(count: count, at: offset, flags: flags)
        // Report whole blocks, so a client that follows the extents' boundaries stays aligned.
        return Self.aligned(extents, to: UInt64(capabilities.blockSize.minimum))
    }

    /// `extents` rearranged into runs that are multiples of `block`: a block made of several
    /// extents is a hole or reads as zero only if all its parts are. A final partial block is dropped
    /// unless it is all there is (a reply may describe less than was asked, never nothing).
    static func aligned(_ extents: [Extent], to block: UInt64) -> [Extent] {
        guard block > 1 else { return extents }
        var result: [Extent] = []
        var partial: Extent?
        func emit(_ extent: Extent) {
            if let last = result.last, last.flags == extent.flags {
                result[result.count - 1].length += extent.length
            } else {
                result.append(extent)
            }
        }
        for var extent in extents {
            if var pending = partial {
                let take = min(block - pending.length, extent.length)
                pending.length += take
                pending.flags.formIntersection(extent.flags)
                extent.length -= take
                if pending.length == block {
                    emit(pending)
                    partial = nil
                } else {
                    partial = pending
                    continue
                }
            }
            let whole = extent.length / block * block
            if whole > 0 { emit(Extent(length: whole, flags: extent.flags)) }
            if extent.length > whole { partial = Extent(length: extent.length - whole, flags: extent.flags) }
        }
        if result.isEmpty, let partial { result.append(partial) }
        return result
    }
}

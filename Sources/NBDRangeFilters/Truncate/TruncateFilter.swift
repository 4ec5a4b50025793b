import NBDCore

/// nbdkit's truncate filter for one connection: changes the export's size. A smaller size hides the
/// end of the layer below; a larger one adds bytes that read as zeroes.
///
/// ```swift
/// // Round an odd-sized image up to whole 512-byte sectors.
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in try TruncateFilter(wrapping: next, roundUp: 512) }
/// ```
///
/// Past the end of the layer below (its *real size*):
/// - reads return zeroes;
/// - writes must write zeroes, which are accepted and dropped; anything else fails with `ENOSPC`
///   before any of the write reaches the layer below;
/// - zero, trim and cache requests are accepted and do nothing (a fast zero there is free);
/// - block status reports a hole that reads as zeroes.
///
/// Requests that straddle the real size are cut at it.
public struct TruncateFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with the new size, block status always available (the tail is
    /// a known hole) and fast zero always advertised, as nbdkit does.
    public let capabilities: Capabilities
    /// The size of the layer below.
    public let realSize: UInt64

    /// Applies `truncate`, then `roundUp`, then `roundDown` to the size of `next`, as nbdkit applies
    /// its three parameters in that order.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when a rounding is not a power of two or rounding up passes
    ///   the NBD maximum size of 2^63 − 1.
    public init(
        wrapping next: Next, truncate: UInt64? = nil, roundUp: UInt64? = nil, roundDown: UInt64? = nil
    ) throws(NBDError) {
        let below = next.capabilities
        var size = truncate ?? below.size
        if let roundUp {
            try Self.checkRounding(roundUp, "round-up")
            let (rounded, overflow) = size.addingReportingOverflow(roundUp - 1)
            guard !overflow, rounded & ~(roundUp - 1) <= UInt64(Int64.max) else {
                throw NBDError(
                    .invalidArgument, "round-up=\(roundUp): cannot round the size \(size) up beyond 2^63 - 1")
            }
            size = rounded & ~(roundUp - 1)
        }
        if let roundDown {
            try Self.checkRounding(roundDown, "round-down")
            size &= ~(roundDown - 1)
        }
        var capabilities = below
        capabilities.size = size
        capabilities.canExtents = true
        capabilities.canFastZero = true
        self.next = next
        self.realSize = below.size
        self.capabilities = capabilities
    }

    /// nbdkit's rules for `round-up` and `round-down`: above zero, at most 2^32 − 1, a power of two.
    static func checkRounding(_ value: UInt64, _ key: String) throws(NBDError) {
        guard value > 0, value <= UInt64(UInt32.max), value & (value - 1) == 0 else {
            throw NBDError(
                .invalidArgument, "\(key)=\(value): expected a power of two from 1 to 2^31, such as 512 or 4K")
        }
    }

    /// How many of `count` bytes at `offset` lie within the layer below.
    @inlinable
    func countBelow(_ count: UInt64, at offset: UInt64) -> UInt64 {
        offset >= realSize ? 0 : min(count, realSize - offset)
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        let inside = Int(countBelow(UInt64(buffer.count), at: offset))
        if inside == buffer.count {
            return try await next.read(into: buffer, at: offset, flags: flags)
        }
        if inside > 0 {
            try await next.read(
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<inside]), at: offset, flags: flags)
        }
        UnsafeMutableRawBufferPointer(rebasing: buffer[inside...]).initializeMemory(as: UInt8.self, repeating: 0)
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        let inside = Int(countBelow(UInt64(data.count), at: offset))
        if inside == data.count {
            return try await next.write(data, at: offset, flags: flags)
        }
        // Checked before anything is written, so a refused write changes nothing (nbdkit writes the
        // part below first and then fails).
        guard data[inside...].allSatisfy({ $0 == 0 }) else {
            throw NBDError(
                .noSpace,
                "write of non-zero data beyond the end of the layer below (\(realSize) bytes): only zeroes can be written past it"
            )
        }
        if inside > 0 {
            try await next.write(UnsafeRawBufferPointer(rebasing: data[..<inside]), at: offset, flags: flags)
        }
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let inside = countBelow(count, at: offset)
        guard inside > 0 else { return }
        if flags.contains(.fastZero) && !next.capabilities.canFastZero {
            throw NBDError(.notSupported, "the layer below cannot zero fast")
        }
        try await next.zero(count: inside, at: offset, flags: flags)
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let inside = countBelow(count, at: offset)
        guard inside > 0 else { return }
        try await next.trim(count: inside, at: offset, flags: flags)
    }

    @inlinable
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let inside = countBelow(count, at: offset)
        guard inside > 0 else { return }
        try await next.cache(count: inside, at: offset, flags: flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let inside = countBelow(count, at: offset)
        guard inside > 0 else { return [.hole(count)] }
        var extents = try await next.extents(count: inside, at: offset, flags: flags)
        guard inside < count else { return extents }
        // Cut what the layer below said at its end (it may describe more than asked), then add the tail.
        var covered: UInt64 = 0
        var kept = 0
        while kept < extents.count && covered < inside {
            extents[kept].length = min(extents[kept].length, inside - covered)
            covered += extents[kept].length
            kept += 1
        }
        extents.removeLast(extents.count - kept)
        if covered == inside && !flags.contains(.requestOne) {
            extents.append(.hole(count - inside))
        }
        return extents
    }
}

import NBDCore

/// nbdkit's map filter for one connection: remaps parts of the layer below (swap two sectors, move
/// a partition) by a ``RangeMap``. The size is unchanged; a request is split where the map changes.
///
/// ```swift
/// let map = RangeMap(rules: [try .init(parsing: "0-511:512"), try .init(parsing: "512-1023:0")])
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in MapFilter(wrapping: next, map: map) }
/// ```
public struct MapFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The remapping.
    public let map: RangeMap

    /// Wraps `next`.
    public init(wrapping next: Next, map: RangeMap) {
        self.next = next
        self.map = map
    }

    private var size: UInt64 { next.capabilities.size }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await map.forEachPiece(count: UInt64(buffer.count), at: offset, size: size, "read") {
            (position, length, below) throws(NBDError) in
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[Int(position)..<Int(position + length)])
            try await next.read(into: piece, at: below, flags: flags)
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await map.forEachPiece(count: UInt64(data.count), at: offset, size: size, "write") {
            (position, length, below) throws(NBDError) in
            let piece = UnsafeRawBufferPointer(rebasing: data[Int(position)..<Int(position + length)])
            try await next.write(piece, at: below, flags: flags)
        }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await map.forEachPiece(count: count, at: offset, size: size, "zero") {
            (_, length, below) throws(NBDError) in
            try await next.zero(count: length, at: below, flags: flags)
        }
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await map.forEachPiece(count: count, at: offset, size: size, "trim") {
            (_, length, below) throws(NBDError) in
            try await next.trim(count: length, at: below, flags: flags)
        }
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await map.forEachPiece(count: count, at: offset, size: size, "cache") {
            (_, length, below) throws(NBDError) in
            try await next.cache(count: length, at: below, flags: flags)
        }
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        var result: [Extent] = []
        try await map.forEachPiece(count: count, at: offset, size: size, "extents") {
            (_, length, below) throws(NBDError) in
            var remaining = length
            // Each piece is described in full (the layer below may answer in parts), so that the
            // next piece's extents start where this one's end.
            while remaining > 0 {
                let answer = try await next.extents(
                    count: remaining, at: below + (length - remaining), flags: flags.subtracting(.requestOne))
                guard !answer.isEmpty else {
                    throw NBDError(.ioError, "map: the layer below returned no extents")
                }
                for extent in answer where remaining > 0 {
                    let taken = min(extent.length, remaining)
                    if let last = result.last, last.flags == extent.flags {
                        result[result.count - 1].length += taken
                    } else {
                        result.append(Extent(length: taken, flags: extent.flags))
                    }
                    remaining -= taken
                }
            }
        }
        return result
    }
}

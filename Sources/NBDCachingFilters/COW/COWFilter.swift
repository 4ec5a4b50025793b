import NBDCore

/// nbdkit's cow filter for one connection: a writable copy-on-write overlay over a layer below
/// that is never written (and may be read-only). The overlay lives in a sparse, unlinked temporary
/// file shared by every connection of the export; everything written is gone when the server stops.
///
/// ```swift
/// let overlay = try COWOverlay(exportSize: 1 << 30, configuration: COWConfiguration())
/// let export = try FileBackendProvider(path: "base.img", readOnly: true)
///     .wrapped { next, connection in COWFilter(wrapping: next, overlay: overlay, connection: connection) }
/// ```
///
/// Capabilities, as nbdkit: writable, trim, zero (fast zero advertised and refused with `ENOTSUP`),
/// flush and native FUA (both have nothing to do: the overlay is temporary by design), native cache,
/// block status, and multi-conn (one overlay for every connection).
public struct COWFilter<Next: BlockBackend>: Filter {
    /// The layer below; only read.
    public let next: Next
    /// The capabilities the overlay advertises.
    public let capabilities: Capabilities
    /// The overlay shared by every connection of the export.
    public let overlay: COWOverlay

    /// Wraps `next` for one connection, using the `overlay` every connection of the export shares.
    /// A read-only `connection` gets a read-only view.
    public init(wrapping next: Next, overlay: COWOverlay, connection: ConnectionInfo = ConnectionInfo()) {
        self.next = next
        self.overlay = overlay
        let below = next.capabilities
        var caps = below
        caps.isWritable = !connection.isReadOnly
        caps.canTrim = caps.isWritable
        caps.canZero = caps.isWritable
        // Never fast: `zero` refuses NBD_CMD_FLAG_FAST_ZERO, so it is not advertised (as nbdkit's cow).
        caps.canFastZero = false
        caps.canFlush = true
        caps.fua = caps.isWritable ? .native : .none
        caps.cache = .native
        caps.canExtents = true
        caps.canMultiConn = true
        if below.blockSize.maximumPayload >= UInt32(overlay.blockSize) {
            caps.blockSize.preferred = max(below.blockSize.preferred, UInt32(overlay.blockSize))
        }
        // Nothing reaches the layer below but reads, cache and block status requests.
        caps.slowOperations = below.slowOperations.intersection([.read, .cache, .extents])
        if below.slowOperations.contains(.read) { caps.slowOperations.formUnion([.write, .zero, .trim]) }
        capabilities = caps
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await overlay.read(into: buffer, at: offset, next: next)
    }

    /// Writes into the overlay. FUA needs nothing more: the overlay is temporary, so there is no
    /// more durable place for the data to reach (nbdkit ignores FUA here too).
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await overlay.write(data, count: data.count, at: offset, mayTrim: false, next: next)
    }

    /// Zeroes in the overlay: whole blocks become holes that read as zeroes unless `NO_HOLE` asks
    /// for allocation; a fast zero is refused, as nbdkit does.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if flags.contains(.fastZero) {
            throw NBDError(.notSupported, "cow: zeroing is done in the overlay, which is not fast")
        }
        try await overlay.write(nil, count: Int(count), at: offset, mayTrim: !flags.contains(.noHole), next: next)
    }

    /// Trims in the overlay: whole blocks become holes, partial blocks are zeroed (so a trimmed
    /// range always reads as zeroes here, although NBD would allow anything).
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await overlay.write(nil, count: Int(count), at: offset, mayTrim: true, next: next)
    }

    /// Nothing to do: the overlay is temporary and the layer below is never written.
    public func flush(flags: CommandFlags) async throws(NBDError) {}

    /// With cow-on-cache, copies the blocks into the overlay; otherwise asks the layer below to
    /// prefetch (native), reads and discards (emulated), or does nothing, as nbdkit does.
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if overlay.configuration.onCache {
            try await overlay.copyIn(count: count, at: offset, next: next)
            return
        }
        switch next.capabilities.cache {
        case .native:
            try await next.cache(count: count, at: offset, flags: [])
        case .emulated:
            let chunk = 1 << 20
            var done: UInt64 = 0
            let buffer = UnsafeMutableRawBufferPointer.allocate(
                byteCount: Int(min(UInt64(chunk), count)), alignment: 16)
            defer { buffer.deallocate() }
            while done < count {
                let piece = Int(min(UInt64(buffer.count), count - done))
                try await next.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<piece]), at: offset + done, flags: [])
                done += UInt64(piece)
            }
        case .none:
            break
        }
    }

    /// Block status: overlay blocks are data, trimmed or zeroed blocks holes that read as zeroes,
    /// the rest is what the layer below says (data when it cannot say).
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let overrides = overlay.overrides(count: count, at: offset)
        if let only = overrides.first, overrides.count == 1, only.range.lowerBound <= offset,
            only.range.upperBound >= offset + count
        {
            return [Extent(length: count, flags: only.flags)]
        }
        let below: [Extent] =
            next.capabilities.canExtents
            ? try await next.extents(count: count, at: offset, flags: flags.subtracting(.requestOne)) : [.data(count)]
        return ExtentOverlay.apply(overrides, to: below, start: offset, count: count)
    }
}

import NBDCore

/// nbdkit's swab filter for one connection: reverses the byte order of every 2-, 4- or 8-byte word
/// between the client and the layer below (disks from byte-swapped IDE controllers, or a big-endian
/// pattern read as little-endian).
///
/// ```swift
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in SwabFilter(wrapping: next, width: SwabWidth(bits: 16)!) }
/// ```
///
/// The size is rounded down to a whole word and the minimum block size raised to the word, so the
/// server refuses unaligned requests with `EINVAL` (nbdkit's answer); the filter checks again for
/// callers that skip the server. Writes swap into a buffer of their own, so the client's data is
/// not changed.
public struct SwabFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with the size and minimum block rounded to the word.
    public let capabilities: Capabilities
    /// The word whose bytes are reversed.
    public let width: SwabWidth

    /// Wraps `next`, reversing the bytes of each word of `width`.
    public init(wrapping next: Next, width: SwabWidth) {
        var capabilities = next.capabilities
        let word = UInt64(width.bytes)
        capabilities.size = capabilities.size / word * word
        if capabilities.blockSize.minimum < UInt32(word) {
            capabilities.blockSize.minimum = UInt32(word)
            capabilities.blockSize.preferred = max(capabilities.blockSize.preferred, 512)
        }
        self.next = next
        self.width = width
        self.capabilities = capabilities
    }

    @usableFromInline
    func checkAligned(_ count: UInt64, _ offset: UInt64) throws(NBDError) {
        let word = UInt64(width.bytes)
        guard count % word == 0, offset % word == 0 else {
            throw NBDError(
                .invalidArgument,
                "swab: requests must be aligned to \(word) bytes (swab-bits=\(word * 8)); offset \(offset), length \(count)"
            )
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try checkAligned(UInt64(buffer.count), offset)
        try await next.read(into: buffer, at: offset, flags: flags)
        width.swap(UnsafeRawBufferPointer(buffer), into: buffer)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try checkAligned(UInt64(data.count), offset)
        guard width.bytes > 1 else { return try await next.write(data, at: offset, flags: flags) }
        let swapped = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 16)
        defer { swapped.deallocate() }
        width.swap(data, into: swapped)
        try await next.write(UnsafeRawBufferPointer(swapped), at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try checkAligned(count, offset)
        try await next.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try checkAligned(count, offset)
        try await next.trim(count: count, at: offset, flags: flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try checkAligned(count, offset)
        try await next.cache(count: count, at: offset, flags: flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try checkAligned(count, offset)
        return width.aligned(try await next.extents(count: count, at: offset, flags: flags))
    }
}

/// The bottom layer of a stack: carries out what a backend reports as emulated, so backend authors
/// need not.
///
/// - A write, zero or trim with FUA over a backend whose FUA support is ``FUASupport/emulated`` is
///   sent without FUA and followed by a flush; the reply waits for the flush, as the NBD protocol
///   requires of FUA. (nbdkit does the same at its plugin layer.)
/// - A cache request over a backend whose cache support is ``CacheSupport/emulated`` reads the range in
///   bounded chunks and discards the data.
/// - A FUA request over a backend with no FUA support at all cannot be honoured; rather than dropping
///   durability silently it flushes when the backend can, and otherwise fails with `EINVAL`.
public struct FeatureEmulation<Next: BlockBackend>: Filter {
    public let next: Next
    public let capabilities: Capabilities

    /// The largest read issued at once while emulating a cache request.
    public static var cacheChunkSize: Int { 1 << 20 }

    /// Wraps `next`, reading its capabilities once.
    public init(wrapping next: Next) {
        self.next = next
        self.capabilities = next.capabilities
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        guard flags.contains(.fua), capabilities.fua != .native else {
            return try await next.write(data, at: offset, flags: flags)
        }
        try await next.write(data, at: offset, flags: flags.subtracting(.fua))
        try await flushForFUA()
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard flags.contains(.fua), capabilities.fua != .native else {
            return try await next.zero(count: count, at: offset, flags: flags)
        }
        try await next.zero(count: count, at: offset, flags: flags.subtracting(.fua))
        try await flushForFUA()
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard flags.contains(.fua), capabilities.fua != .native else {
            return try await next.trim(count: count, at: offset, flags: flags)
        }
        try await next.trim(count: count, at: offset, flags: flags.subtracting(.fua))
        try await flushForFUA()
    }

    @usableFromInline
    func flushForFUA() async throws(NBDError) {
        guard capabilities.canFlush else {
            throw NBDError(.invalidArgument, "FUA was requested but the backend supports neither FUA nor flush")
        }
        try await next.flush(flags: [])
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard capabilities.cache == .emulated else {
            return try await next.cache(count: count, at: offset, flags: flags)
        }
        let chunk = Int(min(count, UInt64(Self.cacheChunkSize)))
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { scratch.deallocate() }
        var done: UInt64 = 0
        while done < count {
            let n = Int(min(UInt64(chunk), count - done))
            try await next.read(into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n]), at: offset + done, flags: [])
            done += UInt64(n)
        }
    }

    /// Passes through: emulation never changes read data, so the layer below's file region holds it.
    @inlinable
    public func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? {
        await next.fileRegion(count: count, at: offset)
    }
}

import NBDCore

/// nbdkit's nocache filter for one connection: disables, emulates or ignores client cache (prefetch)
/// requests, to measure what they are worth.
///
/// ```swift
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in NoCacheFilter(wrapping: next, mode: .nop) }
/// ```
public struct NoCacheFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with `cache` as ``mode`` advertises it.
    public let capabilities: Capabilities
    /// How cache requests are handled.
    public let mode: CacheMode

    /// The largest read issued at once while emulating a cache request.
    public static var emulationChunkSize: Int { 1 << 20 }

    /// Wraps `next`.
    public init(wrapping next: Next, mode: CacheMode = .none) {
        var capabilities = next.capabilities
        switch mode {
        case .none:
            capabilities.cache = .none
            capabilities.slowOperations.remove(.cache)
        case .emulate:
            capabilities.cache = .emulated
            // Emulation reads, so it is as slow as a read below.
            capabilities.slowOperations.remove(.cache)
            if next.capabilities.slowOperations.contains(.read) { capabilities.slowOperations.insert(.cache) }
        case .nop:
            capabilities.cache = .native
            capabilities.slowOperations.remove(.cache)
        }
        self.next = next
        self.mode = mode
        self.capabilities = capabilities
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        switch mode {
        case .none:
            throw NBDError(.invalidArgument, "cache requests are not supported (the nocache filter's cachemode=none)")
        case .nop:
            return
        case .emulate:
            let limit = max(1, Int(next.capabilities.blockSize.maximumPayload))
            let chunk = Int(min(count, UInt64(min(Self.emulationChunkSize, limit))))
            guard chunk > 0 else { return }
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
            defer { scratch.deallocate() }
            var done: UInt64 = 0
            while done < count {
                let n = Int(min(UInt64(chunk), count - done))
                try await next.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<n]), at: offset + done, flags: [])
                done += UInt64(n)
            }
        }
    }
}

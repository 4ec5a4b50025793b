import NBDCore
import Synchronization

/// A test double of nbdkit's cache filter in writeback mode: one block cache shared by every
/// connection, so it reports multi-conn. Reads fill the cache through the reading connection's
/// layer below; writes stay in the cache until a flush (or FUA) writes every dirty block back through
/// the flushing connection.
public final class SharedBlockCache: Sendable {
    struct State {
        var blocks: [UInt64: [UInt8]] = [:]
        var dirty: Set<UInt64> = []
    }

    let blockSize: Int
    let state = LockedValue(State())

    public init(blockSize: Int = 4096) {
        self.blockSize = blockSize
    }
}

/// One connection's view through a ``SharedBlockCache``.
public struct SharedWritebackCacheFilter<Next: BlockBackend>: Filter {
    public let next: Next
    public let cache: SharedBlockCache
    public let capabilities: Capabilities

    public init(wrapping next: Next, cache: SharedBlockCache) {
        self.next = next
        self.cache = cache
        var caps = next.capabilities
        caps.canMultiConn = true
        caps.cache = .native
        self.capabilities = caps
    }

    private func blockRange(_ index: UInt64) -> (offset: UInt64, count: Int) {
        let offset = index * UInt64(cache.blockSize)
        return (offset, Int(min(UInt64(cache.blockSize), capabilities.size - offset)))
    }

    /// Makes sure every block of the range is cached, reading missing ones from below.
    private func fill(offset: UInt64, count: UInt64) async throws(NBDError) {
        guard count > 0 else { return }
        let size = UInt64(cache.blockSize)
        for index in (offset / size)...((offset + count - 1) / size) {
            if cache.state.withLock({ $0.blocks[index] != nil }) { continue }
            let (blockOffset, blockCount) = blockRange(index)
            let bytes = try await next.readBytes(blockCount, at: blockOffset)
            cache.state.withLock { state in
                if state.blocks[index] == nil { state.blocks[index] = bytes }
            }
        }
    }

    private func apply(offset: UInt64, bytes: [UInt8]) {
        let size = UInt64(cache.blockSize)
        cache.state.withLock { state in
            for (i, byte) in bytes.enumerated() {
                let position = offset + UInt64(i)
                let index = position / size
                state.blocks[index]![Int(position % size)] = byte
                state.dirty.insert(index)
            }
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await fill(offset: offset, count: UInt64(buffer.count))
        let size = UInt64(cache.blockSize)
        cache.state.withLock { state in
            for i in 0..<buffer.count {
                let position = offset + UInt64(i)
                buffer[i] = state.blocks[position / size]![Int(position % size)]
            }
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await fill(offset: offset, count: UInt64(data.count))
        apply(offset: offset, bytes: Array(data))
        if flags.contains(.fua) { try await flush(flags: []) }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await fill(offset: offset, count: count)
        apply(offset: offset, bytes: [UInt8](repeating: 0, count: Int(count)))
        if flags.contains(.fua) { try await flush(flags: []) }
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await zero(count: count, at: offset, flags: flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await fill(offset: offset, count: count)
    }

    /// Writes back every dirty block, whichever connection dirtied it, then flushes below.
    public func flush(flags: CommandFlags) async throws(NBDError) {
        let dirty: [(UInt64, [UInt8])] = cache.state.withLock { state in
            let blocks = state.dirty.sorted().map { ($0, state.blocks[$0]!) }
            state.dirty.removeAll()
            return blocks
        }
        for (index, bytes) in dirty {
            try await next.writeBytes(bytes, at: blockRange(index).offset)
        }
        try await next.flush(flags: flags)
    }
}

/// A ``FilterLayer`` for ``SharedWritebackCacheFilter``: every connection shares one cache.
public struct SharedWritebackCacheLayer: FilterLayer {
    public let cache = SharedBlockCache()
    public var name: String { "cache" }

    public init() {}

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        AnyBlockBackend(SharedWritebackCacheFilter(wrapping: next, cache: cache))
    }
}

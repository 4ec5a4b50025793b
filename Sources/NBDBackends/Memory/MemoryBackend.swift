import NBDCore

/// One connection's view of a ``MemoryBackendProvider``'s export. All views share one store, so what
/// one connection writes the others read at once.
///
/// Requests run inline on the caller's executor and never suspend; a 4 KiB read or write is a table
/// walk and a copy. Flush and FUA have nothing to do: memory has no volatile cache to drain.
public struct MemoryBackend: BlockBackend {
    public let capabilities: Capabilities
    @usableFromInline let store: MemoryStore

    init(store: MemoryStore, isReadOnly: Bool) {
        self.store = store
        let capabilities = Capabilities(
            size: store.size,
            isWritable: true,
            canFlush: true,
            // Every write is "durable" (as durable as memory gets) when it returns.
            fua: .native,
            canTrim: true,
            canZero: true,
            // Zeroing never writes more than two partial pages, so it is always fast.
            canFastZero: true,
            // As nbdkit's memory plugin: the data is already in memory, so a cache request has nothing
            // to do and succeeds at once (the default `cache` does nothing).
            cache: .native,
            canExtents: true,
            // One shared store and no per-connection cache: the NBD spec's condition for multi-conn.
            canMultiConn: true,
            slowOperations: []
        )
        self.capabilities = isReadOnly ? capabilities.readOnly : capabilities
    }

    /// How many pages of the shared store currently hold data.
    public var allocatedPageCount: Int { store.allocatedPageCount }

    /// The memory the shared store currently takes, pages and page tables.
    public var allocatedBytes: Int { store.allocatedBytes }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        store.read(into: buffer, at: offset)
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try store.write(data, at: offset)
    }

    /// Zeroes the range, freeing the pages it covers whole.
    ///
    /// `NO_HOLE` is not honoured by keeping zeroed pages, as in nbdkit's memory plugin: reserving RAM
    /// that reads as zero would guarantee nothing a later write could rely on.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        store.zero(count: count, at: offset)
    }

    /// Frees the pages the range covers whole and zeroes the rest of it, so trimmed data reads as
    /// zeroes, as it does after a zero.
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        store.zero(count: count, at: offset)
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {}

    /// Reports allocated pages as data and the rest as holes that read as zeroes, at most
    /// 4096 extents per call.
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        store.extents(count: count, at: offset, one: flags.contains(.requestOne))
    }
}

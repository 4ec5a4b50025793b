import NBDCore

/// One connection's view of a ``FileBackendProvider``'s file.
///
/// Requests are system calls made inline on the caller's thread: `pread`/`pwrite` for data,
/// `fdatasync` for flush, `pwritev2(RWF_DSYNC)` for FUA writes, `fallocate` for zero and trim,
/// `lseek(SEEK_DATA/SEEK_HOLE)` for extents and `posix_fadvise(WILLNEED)` for cache. Flush and FUA
/// requests wait for the disk, so the capabilities list them as slow operations.
///
/// Reads within the file also report where they lie (``fileRegion(count:at:)``: the shared
/// descriptor, at the same offset), so the server may send them with `sendfile` instead of copying.
public struct FileBackend: BlockBackend {
    public let capabilities: Capabilities
    let store: FileStore

    init(store: FileStore, isReadOnly: Bool) {
        self.store = store
        let capabilities = Capabilities(
            size: store.size,
            isWritable: !store.isReadOnly,
            canFlush: true,
            // Native: FUA writes use RWF_DSYNC, or a write and fdatasync where the kernel lacks it.
            fua: .native,
            canTrim: true,
            canZero: true,
            // Fast zero fails with ENOTSUP when neither hole punching nor zero ranges work.
            canFastZero: true,
            cache: .native,
            canExtents: true,
            // The page cache is shared by every descriptor of the file, so a flush covers the writes
            // of every connection: the NBD spec's condition for multi-conn.
            canMultiConn: true,
            isRotational: store.isRotational,
            slowOperations: [.flush, .fuaRequests]
        )
        self.capabilities = isReadOnly || store.isReadOnly ? capabilities.readOnly : capabilities
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try store.read(into: buffer, at: offset)
    }

    /// Writes `data`; with FUA it is durable on return.
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if flags.contains(.fua) {
            try store.writeDurably(data, at: offset)
        } else {
            try store.write(data, at: offset)
        }
    }

    /// Zeroes the range: punches a hole unless `NO_HOLE` is set, else zeroes it in place with
    /// `FALLOC_FL_ZERO_RANGE`, else writes zeroes, which `FAST_ZERO` forbids (`NBDError.Code.notSupported`).
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try store.zero(count: count, at: offset, flags: flags)
    }

    /// Punches a hole; ignored where the file system cannot.
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try store.trim(count: count, at: offset, flags: flags)
    }

    /// `fdatasync` on the shared descriptor: durable for every connection's completed writes.
    public func flush(flags: CommandFlags) async throws(NBDError) {
        try store.sync()
    }

    /// Starts reading the range into the page cache without waiting for it.
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try store.prefetch(count: count, at: offset)
    }

    /// Reports data and holes as the file system sees them, at most 4096 extents per call; file
    /// systems without hole support report everything as data.
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try store.extents(count: count, at: offset, one: flags.contains(.requestOne))
    }

    /// The file's descriptor at `offset`, when the whole range lies within the size the export
    /// opened with. The descriptor stays open while any backend of the provider is open.
    public func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? {
        guard count >= 0, offset <= store.size, UInt64(count) <= store.size - offset else { return nil }
        return FileRegion(descriptor: store.descriptor.rawValue, offset: offset)
    }
}

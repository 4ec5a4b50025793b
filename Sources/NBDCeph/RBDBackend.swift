import NBDCore

/// One client connection's view of an RBD image: reads, writes, zeroes, trims and flushes go to
/// librbd's asynchronous API and suspend until Ceph answers (every operation is declared in
/// `Capabilities.suspendingOperations`, so the server keeps several in flight per connection and
/// parks no thread on them).
public struct RBDBackend: BlockBackend {
    public let capabilities: Capabilities
    let image: RBDImage
    /// Whether closing this backend closes the image handle (not when the handle is shared).
    let ownsImage: Bool

    init(image: RBDImage, ownsImage: Bool, capabilities: Capabilities) {
        self.image = image
        self.ownsImage = ownsImage
        self.capabilities = capabilities
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await image.read(into: buffer, at: offset)
    }

    /// Writes, then with FUA flushes: librbd has no per-write FUA, and the NBD spec requires the
    /// reply to a FUA write to wait until the data is persistent.
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await image.write(data, at: offset)
        if flags.contains(.fua) { try await image.flush() }
    }

    /// `rbd_aio_write_zeroes`; with `NO_HOLE` it allocates (thick), otherwise librbd may deallocate
    /// whole objects, which read back as zeroes.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await image.writeZeroes(count: count, at: offset, allocate: flags.contains(.noHole))
        if flags.contains(.fua) { try await image.flush() }
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await image.discard(count: count, at: offset)
        if flags.contains(.fua) { try await image.flush() }
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try await image.flush()
    }

    /// From the object map, whole objects at a time, where the image has fast-diff (otherwise the
    /// capabilities do not offer block status and the server reports data).
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try await image.allocation(count: count, at: offset)
    }

    public func close() async {
        if ownsImage { await image.close() }
    }
}

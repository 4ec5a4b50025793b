/// A type-erased backend, for stacks assembled at run time from a list of ``FilterLayer``s.
///
/// Static stacks do not need it; each erasure adds one indirect call per operation.
public struct AnyBlockBackend: BlockBackend {
    /// The wrapped backend.
    public let base: any BlockBackend
    public let capabilities: Capabilities

    /// Wraps `base`, reading its capabilities once. Wrapping an `AnyBlockBackend` does not nest.
    public init(_ base: some BlockBackend) {
        if let erased = base as? AnyBlockBackend {
            self = erased
        } else {
            self.base = base
            self.capabilities = base.capabilities
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await base.read(into: buffer, at: offset, flags: flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await base.write(data, at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await base.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await base.trim(count: count, at: offset, flags: flags)
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try await base.flush(flags: flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await base.cache(count: count, at: offset, flags: flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try await base.extents(count: count, at: offset, flags: flags)
    }

    public func close() async {
        await base.close()
    }

    public var exportDescription: String? { base.exportDescription }

    public func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? {
        await base.fileRegion(count: count, at: offset)
    }
}

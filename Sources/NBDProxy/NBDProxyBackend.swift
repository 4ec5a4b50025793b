import NBDClient
import NBDCore

/// One client connection's view of an upstream NBD export: each operation is the same NBD command
/// sent upstream, with its flags, and the upstream's reply (data, extents or error) is the answer.
public struct NBDProxyBackend: BlockBackend {
    /// The upstream connection.
    public let upstream: NBDConnection
    /// Whether closing this backend disconnects the upstream connection (not when it is shared).
    public let ownsConnection: Bool
    public let capabilities: Capabilities

    /// Wraps an upstream connection.
    public init(upstream: NBDConnection, ownsConnection: Bool, capabilities: Capabilities) {
        self.upstream = upstream
        self.ownsConnection = ownsConnection
        self.capabilities = capabilities
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await upstream.read(into: buffer, at: offset, flags: flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await upstream.write(data, at: offset, flags: flags.intersection(.fua))
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await upstream.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await upstream.trim(count: count, at: offset, flags: flags)
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try await upstream.flush()
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await upstream.cache(count: count, at: offset)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try await upstream.blockStatus(count: count, at: offset, flags: flags)
    }

    public func close() async {
        if ownsConnection { await upstream.disconnect() }
    }
}

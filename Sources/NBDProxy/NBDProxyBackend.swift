import NBDClient
import NBDCore
import NBDWire

/// One client connection's view of an upstream NBD export: each operation is the same NBD command
/// sent upstream, with its flags, and the upstream's reply (data, extents or error) is the answer.
public struct NBDProxyBackend: BlockBackend {
    /// The upstream connection.
    public let upstream: NBDConnection
    /// Whether closing this backend disconnects the upstream connection (not when it is shared).
    public let ownsConnection: Bool
    public let capabilities: Capabilities
    /// The thread that sends large write payloads upstream, or `nil` to send every request from
    /// the calling thread.
    package let forwarder: ThreadExecutor?

    /// Wraps an upstream connection.
    public init(upstream: NBDConnection, ownsConnection: Bool, capabilities: Capabilities) {
        self.init(upstream: upstream, ownsConnection: ownsConnection, capabilities: capabilities, forwarder: nil)
    }

    /// Wraps an upstream connection; writes of at least ``forwardedPayloadMinimum`` bytes are sent
    /// from `forwarder`'s thread, which ``close()`` stops.
    package init(
        upstream: NBDConnection, ownsConnection: Bool, capabilities: Capabilities, forwarder: ThreadExecutor?
    ) {
        self.upstream = upstream
        self.ownsConnection = ownsConnection
        self.capabilities = capabilities
        self.forwarder = forwarder
    }

    /// Writes at least this large are sent upstream from the forwarding thread; smaller ones join
    /// the connection thread's batch of upstream requests, where a hand-off would cost more than
    /// the copy it overlaps.
    package static var forwardedPayloadMinimum: Int { 256 << 10 }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await upstream.read(into: buffer, at: offset, flags: flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let flags = flags.intersection(.fua)
        guard let forwarder, data.count >= Self.forwardedPayloadMinimum else {
            return try await upstream.write(data, at: offset, flags: flags)
        }
        // Leave the server's connection thread (it would otherwise run the hop inline) so that it
        // reads the next request while the forwarding thread copies this payload into the socket.
        InlineResumption.leaveOnNextSuspension()
        let upstream = self.upstream
        let payload = UnsafeSendableBuffer(data)
        try await withTaskExecutorPreference(forwarder) { @concurrent () async throws(NBDError) in
            try await upstream.write(payload.bytes, at: offset, flags: flags)
        }
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
        forwarder?.stop()
    }
}

/// A write's payload handed to the forwarding thread: valid until the write returns, which waits
/// for the forwarded request, and only read.
struct UnsafeSendableBuffer: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
}

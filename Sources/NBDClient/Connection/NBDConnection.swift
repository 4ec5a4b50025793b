import NBDCore
import NBDWire

/// An asynchronous NBD client connection: many requests in flight at once, replies matched to
/// requests by cookie in whatever order the server sends them.
///
/// ```swift
/// let connection = try await NBDConnection.connect(to: try NBDEndpoint(uri: "nbd+unix:///?socket=/tmp/nbd.sock"))
/// var block = [UInt8](repeating: 0, count: 4096)
/// try await block.withUnsafeMutableBytes { try await connection.read(into: $0, at: 0) }
/// try await connection.write(Array("hello".utf8), at: 0, flags: .fua)
/// await connection.disconnect()
/// ```
///
/// ## Threads
/// Each connection has one thread of its own: it connects, does the handshake, and then receives and
/// dispatches every reply, so a blocking `recv` never occupies the cooperative pool. Requests are
/// sent from the calling thread (one `sendmsg` for header and payload; callers never wait on a lock
/// held across a system call). Completion resumes the caller on its own executor.
///
/// ## Back-pressure
/// At most ``ClientConfiguration/maximumBytesInFlight`` payload bytes and
/// ``ClientConfiguration/maximumRequestsInFlight`` requests are in flight; later requests wait for
/// earlier replies.
///
/// ## Errors
/// A request the server fails throws `NBDError` with the server's errno (`NBDError.Code`) and, with
/// structured replies, its message. A server that breaks the protocol (bad magic, a reply to a cookie
/// not in flight, a chunk outside its request, an over-long error message, truncated data) or closes
/// the connection fails every request in flight and every later one with `EIO` or `ESHUTDOWN`;
/// ``closedReason`` says why.
///
/// Requests are not cancellable once sent: the reply writes into the caller's buffer, so the call
/// returns only when the reply arrived or the connection closed.
public final class NBDConnection: Sendable {
    let core: ConnectionCore

    /// What the server said about the export.
    public var export: ExportInfo { core.export }

    /// Why the connection closed, or `nil` while it is usable.
    public var closedReason: NBDError? { core.failure }

    /// Requests waiting for room in the in-flight budget, requests admitted, and their payload bytes
    /// (for tests and diagnostics).
    package var occupancy: (waiting: Int, admitted: Int, bytes: Int) { core.occupancy }

    /// Requests sent on this connection so far (for tests that check how a range was split).
    package var requestsSent: Int { core.requestsSent }

    private init(core: ConnectionCore) {
        self.core = core
    }

    deinit {
        // Wakes the reader thread, which then fails anything left and exits.
        core.socket.shutdownBoth(notifyingPeer: false)
    }

    // MARK: Connecting

    /// Connects to `endpoint` and opens `exportName` (default: the endpoint's URI export, else `""`).
    ///
    /// When the endpoint has ``NBDEndpoint/tls`` options (an `nbds://` URI), `NBD_OPT_STARTTLS` is
    /// sent first and `tlsProvider` (NBDTLSClient's `GnuTLSClientProvider()`) runs the TLS handshake;
    /// everything after it, option haggling included, goes through TLS.
    ///
    /// - Throws: `NBDError`: `EIO` when the server cannot be reached or the handshake fails,
    ///   `EINVAL` when the server does not have the export.
    public static func connect(
        to endpoint: NBDEndpoint, exportName: String? = nil, configuration: ClientConfiguration = ClientConfiguration(),
        tlsProvider: (any ClientTLSProvider)? = nil
    ) async throws(NBDError) -> NBDConnection {
        let name = exportName ?? endpoint.exportName ?? ""
        let result = await withUnsafeContinuation {
            (resume: UnsafeContinuation<Result<ConnectionCore, NBDError>, Never>) in
            let started = ThreadStarter.start(name: "NBDClient.connection") {
                let socket: Socket
                do throws(NBDError) {
                    socket = try Socket.connect(to: endpoint)
                } catch {
                    resume.resume(returning: .failure(error))
                    return
                }
                socket.setReceiveTimeout(configuration.handshakeTimeout)
                var handshake = ClientHandshake(
                    socket: socket, endpoint: endpoint, bufferSize: configuration.receiveBufferSize)
                let export: ExportInfo
                do throws(NBDError) {
                    export = try handshake.negotiate(
                        export: name, configuration: configuration, tlsProvider: tlsProvider)
                } catch {
                    resume.resume(returning: .failure(error))
                    return
                }
                socket.setReceiveTimeout(nil)
                socket.enlargeUnixSendBuffer(4 << 20)
                let core = ConnectionCore(socket: handshake.socket, export: export, configuration: configuration)
                resume.resume(returning: .success(core))
                core.runReader(&handshake.buffer)
            }
            if !started {
                resume.resume(
                    returning: .failure(NBDError(.outOfMemory, "cannot start a thread for the NBD connection")))
            }
        }
        return NBDConnection(core: try result.get())
    }

    /// Lists the server's exports (`NBD_OPT_LIST`) and ends the handshake.
    public static func listExports(
        at endpoint: NBDEndpoint, configuration: ClientConfiguration = ClientConfiguration(),
        tlsProvider: (any ClientTLSProvider)? = nil
    ) async throws(NBDError) -> [ExportListing] {
        try await negotiateOnly(endpoint, configuration, tlsProvider) { handshake throws(NBDError) in
            try handshake.list()
        }
    }

    /// Asks about an export without opening it (`NBD_OPT_INFO`, with block sizes) and ends the
    /// handshake. Extended headers, structured replies and `base:allocation` are negotiated too, so
    /// the result says whether a connection would get them.
    public static func exportInfo(
        at endpoint: NBDEndpoint, exportName: String? = nil, configuration: ClientConfiguration = ClientConfiguration(),
        tlsProvider: (any ClientTLSProvider)? = nil
    ) async throws(NBDError) -> ExportInfo {
        let name = exportName ?? endpoint.exportName ?? ""
        return try await negotiateOnly(endpoint, configuration, tlsProvider) { handshake throws(NBDError) in
            guard handshake.fixedNewstyle else {
                throw NBDError(
                    .notSupported, "the NBD server \(endpoint) does not support NBD_OPT_INFO (not fixed newstyle)")
            }
            let (structured, extended) = try handshake.negotiateReplyForm(configuration)
            let context =
                structured && configuration.blockStatus ? try handshake.negotiateAllocationContext(export: name) : nil
            guard var info = try handshake.go(export: name, enter: false) else {
                throw NBDError(.notSupported, "the NBD server \(endpoint) does not support NBD_OPT_INFO")
            }
            info.structuredReplies = structured
            info.extendedHeaders = extended
            info.allocationContextID = context
            info.usesTLS = handshake.usesTLS
            return info
        }
    }

    private static func negotiateOnly<T: Sendable>(
        _ endpoint: NBDEndpoint, _ configuration: ClientConfiguration, _ tlsProvider: (any ClientTLSProvider)?,
        _ body: @escaping @Sendable (inout ClientHandshake) throws(NBDError) -> T
    ) async throws(NBDError) -> T {
        let result = await withUnsafeContinuation { (resume: UnsafeContinuation<Result<T, NBDError>, Never>) in
            let started = ThreadStarter.start(name: "NBDClient.connection") {
                do throws(NBDError) {
                    let socket = try Socket.connect(to: endpoint)
                    socket.setReceiveTimeout(configuration.handshakeTimeout)
                    var handshake = ClientHandshake(socket: socket, endpoint: endpoint, bufferSize: 64 << 10)
                    try handshake.greet()
                    _ = try handshake.startTLS(
                        endpoint.tls, provider: tlsProvider, timeout: configuration.handshakeTimeout)
                    let value = try body(&handshake)
                    handshake.abort()
                    resume.resume(returning: .success(value))
                } catch {
                    resume.resume(returning: .failure(error))
                }
            }
            if !started {
                resume.resume(
                    returning: .failure(NBDError(.outOfMemory, "cannot start a thread for the NBD connection")))
            }
        }
        return try result.get()
    }

    // MARK: Commands

    /// Reads `buffer.count` bytes at `offset` (`NBD_CMD_READ`). Holes in a structured reply are
    /// filled with zeroes. Reads larger than the server's maximum payload are split.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags = [])
        async throws(NBDError)
    {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        let flags = flags.intersection(export.canDontFragment ? [.dontFragment] : [])
        try await forEachPiece(count: UInt64(buffer.count), at: offset, limit: UInt64(export.maximumPayload)) {
            start, length throws(NBDError) in
            _ = try await core.perform(
                .read, offset: offset + start, length: length, flags: flags, destination: base + Int(start)
            ).get()
        }
    }

    /// Reads `count` bytes at `offset` into a new array.
    public func read(count: Int, at offset: UInt64, flags: CommandFlags = []) async throws(NBDError) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { buffer.deallocate() }
        try await read(into: buffer, at: offset, flags: flags)
        return Array(UnsafeRawBufferPointer(buffer))
    }

    /// Writes `data` at `offset` (`NBD_CMD_WRITE`); with `.fua` it returns once the data is durable.
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags = [])
        async throws(NBDError)
    {
        guard let base = data.baseAddress, data.count > 0 else { return }
        let flags = try checked(flags, allowed: [.fua], for: "write")
        try await forEachPiece(count: UInt64(data.count), at: offset, limit: UInt64(export.maximumPayload)) {
            start, length throws(NBDError) in
            _ = try await core.perform(
                .write, offset: offset + start, length: length, flags: flags,
                payload: UnsafeRawBufferPointer(start: base + Int(start), count: Int(length))
            ).get()
        }
    }

    /// Writes the bytes of `data` at `offset`.
    public func write(_ data: [UInt8], at offset: UInt64, flags: CommandFlags = []) async throws(NBDError) {
        // The bytes are copied so the array's storage is not borrowed across a suspension.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: data)
        try await write(UnsafeRawBufferPointer(buffer), at: offset, flags: flags)
    }

    /// Makes every completed write durable (`NBD_CMD_FLUSH`).
    public func flush() async throws(NBDError) {
        _ = try await core.perform(.flush, offset: 0, length: 0, flags: []).get()
    }

    /// Tells the server `count` bytes at `offset` are no longer needed (`NBD_CMD_TRIM`). With
    /// extended headers this is one request whatever `count`; without, it is split into requests
    /// of less than 4 GiB.
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags = []) async throws(NBDError) {
        let flags = try checked(flags, allowed: [.fua], for: "trim")
        try await forEachPiece(count: count, at: offset, limit: rangeLimit) { start, length throws(NBDError) in
            _ = try await core.perform(.trim, offset: offset + start, length: length, flags: flags).get()
        }
    }

    /// Writes `count` zero bytes at `offset` (`NBD_CMD_WRITE_ZEROES`), with `.noHole` to keep the
    /// range allocated and `.fastZero` to fail with `ENOTSUP` rather than write slowly. With
    /// extended headers this is one request whatever `count`; without, it is split into requests
    /// of less than 4 GiB.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags = []) async throws(NBDError) {
        let flags = try checked(flags, allowed: [.fua, .noHole, .fastZero], for: "write zeroes")
        try await forEachPiece(count: count, at: offset, limit: rangeLimit) { start, length throws(NBDError) in
            _ = try await core.perform(.writeZeroes, offset: offset + start, length: length, flags: flags).get()
        }
    }

    /// Asks the server to prefetch `count` bytes at `offset` (`NBD_CMD_CACHE`), in requests of at
    /// most the server's maximum payload, even with extended headers: qemu-nbd and nbdkit refuse a
    /// longer cache request with `EINVAL`, as they do a longer read.
    public func cache(count: UInt64, at offset: UInt64) async throws(NBDError) {
        try await forEachPiece(count: count, at: offset, limit: UInt64(export.maximumPayload)) {
            start, length throws(NBDError) in
            _ = try await core.perform(.cache, offset: offset + start, length: length, flags: []).get()
        }
    }

    /// The allocation status of the range at `offset` (`NBD_CMD_BLOCK_STATUS`, `base:allocation`):
    /// at least one extent, together at most `count` bytes; with `.requestOne` exactly one.
    /// With extended headers `count` is sent as it is (64 bits, and the extents are 64-bit);
    /// without, a `count` above 4 GiB is shortened to one request's worth.
    public func blockStatus(count: UInt64, at offset: UInt64, flags: CommandFlags = []) async throws(NBDError)
        -> [Extent]
    {
        guard export.canBlockStatus else {
            throw NBDError(.notSupported, "the NBD server did not agree to report base:allocation on this connection")
        }
        let length = min(count, rangeLimit)
        return try await core.perform(
            .blockStatus, offset: offset, length: length, flags: flags.intersection([.requestOne])
        )
        .get()
    }

    /// Ends the connection politely (`NBD_CMD_DISC`): replies to requests already sent still arrive,
    /// later requests fail with `ESHUTDOWN`. Returns when the connection's thread has stopped.
    public func disconnect() async {
        await core.disconnect()
    }

    // MARK: Helpers

    /// The longest range one trim, zero or block status request covers: any with extended
    /// headers; otherwise 4 GiB less one block, aligned to the server's minimum block size.
    private var rangeLimit: UInt64 {
        if export.extendedHeaders { return UInt64.max }
        let minimum = UInt64(max(export.blockSize?.minimum ?? 1, 1))
        return (UInt64(UInt32.max) / minimum) * minimum
    }

    private func checked(_ flags: CommandFlags, allowed: CommandFlags, for what: String) throws(NBDError)
        -> CommandFlags
    {
        let flags = flags.intersection(allowed)
        if flags.contains(.fua) && !export.canFUA {
            throw NBDError(.invalidArgument, "the NBD server does not support FUA, asked for on a \(what)")
        }
        if flags.contains(.fastZero) && !export.canFastZero {
            throw NBDError(.notSupported, "the NBD server does not support fast zero")
        }
        return flags
    }

    /// Splits `count` bytes at `offset` into requests of at most `limit` bytes.
    private func forEachPiece(
        count: UInt64, at offset: UInt64, limit: UInt64, _ body: (UInt64, UInt64) async throws(NBDError) -> Void
    ) async throws(NBDError) {
        guard !offset.addingReportingOverflow(count).overflow else {
            throw NBDError(.invalidArgument, "\(count) bytes at offset \(offset) run past the largest offset")
        }
        var start: UInt64 = 0
        let limit = max(limit, 1)
        while start < count {
            let length = min(count - start, limit)
            try await body(start, length)
            start += length
        }
    }
}

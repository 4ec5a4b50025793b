/// How an ``NBDConnection`` negotiates and how much it keeps in flight.
public struct ClientConfiguration: Sendable, Hashable {
    /// Ask for structured replies (sparse reads, error messages, block status). Default `true`.
    /// When `false`, extended headers are not asked for either (they imply structured replies).
    public var structuredReplies: Bool
    /// Ask for extended headers (`NBD_OPT_EXTENDED_HEADERS`: 32-byte headers with 64-bit lengths),
    /// so that one zero, trim, cache or block status request can cover more than 4 GiB. Default
    /// `true`, as in libnbd 1.18 and later. A server that refuses gets structured replies, then
    /// simple replies, as before; ``ExportInfo/extendedHeaders`` says what was agreed. Set it to
    /// `false` to use only the compact headers (for example to test a server's fallback).
    public var extendedHeaders: Bool
    /// Ask for the `base:allocation` metadata context, so ``NBDConnection/blockStatus(count:at:flags:)``
    /// works. Default `true`; needs structured replies.
    public var blockStatus: Bool
    /// Skip `NBD_OPT_GO` and use the old `NBD_OPT_EXPORT_NAME` (which sends no block sizes and
    /// cannot report a missing export). Default `false`; for testing old-server fallbacks.
    public var useExportNameOption: Bool
    /// The most payload bytes (write data plus expected read data) in flight on the connection.
    /// Requests beyond it wait until earlier replies arrive: memory stays bounded however fast the
    /// caller issues requests. A single larger request is let through when nothing else is in flight.
    public var maximumBytesInFlight: Int
    /// The most requests in flight on the connection.
    public var maximumRequestsInFlight: Int
    /// How long each read of the handshake may wait for the server; `nil` waits forever.
    public var handshakeTimeout: Duration?
    /// The size of the receive buffer: the longest block status or error chunk accepted is a little
    /// smaller.
    public var receiveBufferSize: Int
    /// Whether the reply reader marks its thread for NBDCore's inline resumption, so that a caller
    /// that allows it (nbd-serve's requests over the `nbd` backend) continues on the reader's
    /// thread when its reply arrives, with no thread hand-off; the replies it writes are batched
    /// until the reader waits for more. Default `true`. The caller's continuation then delays the
    /// next replies of this connection, so a connection shared by many callers, any of which may
    /// block (a client that stopped reading its replies), should turn it off.
    public var resumesCallersOnReaderThread: Bool

    /// Creates a configuration.
    public init(
        structuredReplies: Bool = true, extendedHeaders: Bool = true, blockStatus: Bool = true,
        useExportNameOption: Bool = false,
        maximumBytesInFlight: Int = 64 << 20, maximumRequestsInFlight: Int = 512,
        handshakeTimeout: Duration? = .seconds(30), receiveBufferSize: Int = 256 << 10,
        resumesCallersOnReaderThread: Bool = true
    ) {
        self.structuredReplies = structuredReplies
        self.extendedHeaders = extendedHeaders
        self.blockStatus = blockStatus
        self.useExportNameOption = useExportNameOption
        self.maximumBytesInFlight = maximumBytesInFlight
        self.maximumRequestsInFlight = maximumRequestsInFlight
        self.handshakeTimeout = handshakeTimeout
        self.receiveBufferSize = receiveBufferSize
        self.resumesCallersOnReaderThread = resumesCallersOnReaderThread
    }
}

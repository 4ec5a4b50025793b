/// How an ``NBDConnection`` negotiates and how much it keeps in flight.
public struct ClientConfiguration: Sendable, Hashable {
    /// Ask for structured replies (sparse reads, error messages, block status). Default `true`.
    public var structuredReplies: Bool
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

    /// Creates a configuration.
    public init(
        structuredReplies: Bool = true, blockStatus: Bool = true, useExportNameOption: Bool = false,
        maximumBytesInFlight: Int = 64 << 20, maximumRequestsInFlight: Int = 512,
        handshakeTimeout: Duration? = .seconds(30), receiveBufferSize: Int = 256 << 10
    ) {
        self.structuredReplies = structuredReplies
        self.blockStatus = blockStatus
        self.useExportNameOption = useExportNameOption
        self.maximumBytesInFlight = maximumBytesInFlight
        self.maximumRequestsInFlight = maximumRequestsInFlight
        self.handshakeTimeout = handshakeTimeout
        self.receiveBufferSize = receiveBufferSize
    }
}

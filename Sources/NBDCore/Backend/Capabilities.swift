/// What one connection's view of an export can do, resolved once when the connection opens and
/// passed up through the filter chain (each filter may rewrite it).
///
/// The server derives the NBD transmission flags from the outermost layer's capabilities.
public struct Capabilities: Sendable, Hashable {
    /// The export size in bytes (at most 2^63 - 1).
    public var size: UInt64
    /// Whether writes, zeroes and trims are allowed; `false` sets `NBD_FLAG_READ_ONLY`.
    public var isWritable: Bool
    /// Whether flush is supported (`NBD_FLAG_SEND_FLUSH`).
    public var canFlush: Bool
    /// How FUA is supported; anything but ``FUASupport/none`` sets `NBD_FLAG_SEND_FUA`.
    public var fua: FUASupport
    /// Whether trim is supported (`NBD_FLAG_SEND_TRIM`).
    public var canTrim: Bool
    /// Whether write-zeroes is supported (`NBD_FLAG_SEND_WRITE_ZEROES`).
    public var canZero: Bool
    /// Whether a fast zero can be attempted (`NBD_FLAG_SEND_FAST_ZERO`).
    public var canFastZero: Bool
    /// How cache requests are supported; anything but ``CacheSupport/none`` sets `NBD_FLAG_SEND_CACHE`.
    public var cache: CacheSupport
    /// Whether allocation status can be reported (`base:allocation` block status).
    public var canExtents: Bool
    /// Whether flushes and FUA are visible across all connections (`NBD_FLAG_CAN_MULTI_CONN`).
    public var canMultiConn: Bool
    /// Whether the storage is rotational (`NBD_FLAG_ROTATIONAL`).
    public var isRotational: Bool
    /// The block size constraints to advertise and enforce.
    public var blockSize: BlockSizeConstraints
    /// Operations that may block for long (a disk sync, a remote call). The server runs these off the
    /// connection's thread, with bounded concurrency, so they do not stall the requests behind them.
    public var slowOperations: Operations
    /// Operations that wait without holding a thread: they suspend (a proxy awaiting its upstream's
    /// reply) and are resumed by whoever completes them. The server starts these at once on the
    /// connection's thread, several at a time (bounded per connection), and writes each reply when
    /// it completes, with no thread hand-off when they are resumed by a thread marked with
    /// NBDCore's inline-resumption scope (the NBD client's reply reader). An operation that is also
    /// in ``slowOperations`` is treated as slow. Empty by default: a backend that completes without
    /// suspending is served fastest inline, one request at a time.
    public var suspendingOperations: Operations

    /// Creates capabilities. The defaults describe a writable export that supports everything natively
    /// except multi-conn, with the protocol's default block sizes.
    public init(
        size: UInt64,
        isWritable: Bool = true,
        canFlush: Bool = true,
        fua: FUASupport = .native,
        canTrim: Bool = true,
        canZero: Bool = true,
        canFastZero: Bool = true,
        cache: CacheSupport = .none,
        canExtents: Bool = false,
        canMultiConn: Bool = false,
        isRotational: Bool = false,
        blockSize: BlockSizeConstraints = .default,
        slowOperations: Operations = [],
        suspendingOperations: Operations = []
    ) {
        self.size = size
        self.isWritable = isWritable
        self.canFlush = canFlush
        self.fua = fua
        self.canTrim = canTrim
        self.canZero = canZero
        self.canFastZero = canFastZero
        self.cache = cache
        self.canExtents = canExtents
        self.canMultiConn = canMultiConn
        self.isRotational = isRotational
        self.blockSize = blockSize
        self.slowOperations = slowOperations
        self.suspendingOperations = suspendingOperations
    }

    /// The capabilities as a read-only connection sees them: writes, zeroes, trims and FUA are off.
    public var readOnly: Capabilities {
        var copy = self
        copy.isWritable = false
        copy.canTrim = false
        copy.canZero = false
        copy.canFastZero = false
        copy.fua = .none
        return copy
    }
}

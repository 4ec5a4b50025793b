#if canImport(Glibc)
    import Glibc
#endif

/// The limits and policies of an ``NBDServer``.
///
/// ```swift
/// var configuration = ServerConfiguration()
/// configuration.isReadOnly = true
/// configuration.exportDescription = "golden image"
/// configuration.logger = { message in print(message) }
/// ```
public struct ServerConfiguration: Sendable {
    /// Whether every connection is read-only: `NBD_FLAG_READ_ONLY` is advertised and writes fail
    /// with `EPERM`. Backends see it in `ConnectionInfo.isReadOnly`.
    public var isReadOnly: Bool
    /// The text sent as `NBD_INFO_DESCRIPTION` and in `NBD_OPT_LIST` replies for an export whose
    /// stack gives no description of its own (`BlockBackend.exportDescription`,
    /// `ExportEntry.description`); empty sends none.
    public var exportDescription: String
    /// The largest read or write payload accepted, advertised with `NBD_INFO_BLOCK_SIZE` when the
    /// client asks. The default is 32 MiB, what every interoperable client stays within. The
    /// backend's own `BlockSizeConstraints.maximumPayload` applies too; the smaller wins,
    /// and never more than 1 GiB.
    /// Larger requests get `EINVAL` (a write's payload is read and discarded first).
    public var maximumPayload: UInt32
    /// A write whose payload exceeds this is not worth discarding: the connection is dropped.
    public var maximumDiscardedPayload: UInt64
    /// The longest option accepted during the handshake; a longer one drops the connection.
    public var maximumOptionLength: UInt32
    /// The largest number of connections served at once; more are closed straight after `accept`.
    /// With 1, `NBD_FLAG_CAN_MULTI_CONN` is never advertised.
    ///
    /// The default, 64, suits a server embedded in another program. Each connection costs one file
    /// descriptor, one thread and its buffers (see `Documentation/Server.md`); `nbd-serve` sets this
    /// from the process's file-descriptor limit instead, as nbdkit has no cap of its own, and offers
    /// the limit filter for a lower one.
    public var maximumConnections: Int
    /// The largest number of slow and suspended requests (see `Capabilities.slowOperations` and
    /// `Capabilities.suspendingOperations`) outstanding at once per connection. When reached, the
    /// connection stops reading requests until one finishes: back-pressure that also bounds the
    /// memory a client can tie up. The default, 16, is as many as nbdkit's default thread count
    /// per connection keeps in flight.
    public var maximumSlowRequestsPerConnection: Int
    /// The number of threads that run slow requests, shared by every connection. A multi-conn
    /// fan-out started by a slow flush runs its per-connection flushes on these threads too, so this
    /// also bounds how many blocking flushes (`fdatasync`) run at once. Idle threads cost no CPU.
    public var slowOperationThreads: Int
    /// A slow request (see `Capabilities.slowOperations`) runs inline on its connection's
    /// thread, like any other request, while that connection's slow requests have recently taken
    /// less than this on average; `nil` always sends them to the pool.
    ///
    /// Slow operations are declared slow because they *may* block (an `fdatasync` on a disk). When
    /// they do not (tmpfs, a disk with nothing to write back, a multi-conn fan-out over in-memory
    /// backends), handing each one to the pool costs more than the call: a flush after every write
    /// then runs at a fraction of the speed it could. Every slow request is timed, inline or not,
    /// so a connection goes back to the pool once the calls slow down; the first slow request of a
    /// connection always goes to the pool. The default is 20 µs, well below a disk sync.
    public var inlineSlowOperationThreshold: Duration?
    /// The size of each connection's receive buffer; one `recv` picks up everything that fits.
    public var receiveBufferSize: Int
    /// The send buffer asked of the kernel for each connection accepted on a Unix socket, or `nil`
    /// for the kernel's default (208 KiB on Linux). TCP connections keep the kernel's autotuning.
    ///
    /// A Unix stream socket lets a sender queue only its send buffer towards the peer. While a
    /// connection copies the next large read (1 MiB) into its reply buffer, the client can only drain
    /// what is queued; with the default it then waits for the server. The default of 4 MiB let one
    /// connection's 1 MiB sequential reads run about 17 % faster and `nbdcopy` over one connection
    /// about 30 % faster on the benchmark machine (`Benchmarks/README.md`). The memory is only used
    /// while a client reads slower than the server sends, and the kernel caps the size at
    /// `net.core.wmem_max`. A connection that starts TLS goes back to the kernel's default: a
    /// client decrypting what was queued long before reads it from colder caches, and 1 MiB TLS
    /// reads ran about 9 % slower with the large buffer.
    public var unixSocketSendBufferSize: Int?
    /// Replies are batched until this many bytes are pending (or no request is buffered).
    public var sendBatchSize: Int
    /// Structured reads of at least this many bytes ask the stack for allocation first and send the
    /// runs that read as zeroes as `NBD_REPLY_TYPE_OFFSET_HOLE` chunks instead of data, when the stack
    /// reports extents and the read has no `DF` flag. Smaller reads skip the extra extents call: it
    /// would cost more than it saves. `nil` (the default) always sends data: the extra extents call
    /// is visible to the filters (the stats filter would count extents requests no client sent), so
    /// turn it on deliberately, for example with 64 KiB for sparse images read over slow links.
    public var holeDetectionThreshold: Int?
    /// How long a client may take between bytes of the handshake before it is dropped, so idle
    /// connections cannot hold connection slots forever; `nil` waits forever. The transmission phase
    /// has no timeout.
    public var handshakeTimeout: Duration?
    /// How long ``NBDServer/shutdown()`` lets connections finish before it closes the ones left (for
    /// example a client that stopped reading, so a reply cannot be sent).
    public var shutdownGracePeriod: Duration
    /// Receives every ``ServerEvent`` (levels, kinds and metadata), or `nil`. The string loggers
    /// below keep receiving the same events as text.
    public var eventHandler: (@Sendable (ServerEvent) -> Void)?
    /// Receives debug messages (connections opening and closing, refused requests), or `nil`: the
    /// text of every ``ServerEvent`` below ``ServerEvent/Level/error``.
    public var logger: (@Sendable (String) -> Void)?
    /// Receives what an operator should see even without debug output: an export that could not be
    /// opened for a client (with the reason the client was sent), a connection refused at the
    /// connection limit, a client dropped for a protocol violation. `nil` sends these to ``logger``.
    public var errorLogger: (@Sendable (String) -> Void)?

    /// Whether `NBD_OPT_STRUCTURED_REPLY` is accepted (the default). With `false` it is answered
    /// `NBD_REP_ERR_UNSUP`, so clients fall back to simple replies and get no meta contexts (block
    /// status): nbdkit's `--no-sr`, for testing how clients cope with an older server.
    public var offersStructuredReplies = true
    /// Whether `NBD_OPT_EXTENDED_HEADERS` is accepted (the default): 32-byte request and reply
    /// headers with 64-bit lengths, so one zero, trim, cache or block-status request (and one
    /// block-status reply) can cover more than 4 GiB, as qemu 8.2+ and libnbd 1.18+ ask for. With
    /// `false` it is answered `NBD_REP_ERR_UNSUP` and clients keep the compact headers (qemu then
    /// reports a 32-bit transaction size). Extended headers imply structured replies, so they are
    /// not offered when ``offersStructuredReplies`` is `false` either. Compact headers are served
    /// unchanged to clients that do not ask.
    public var offersExtendedHeaders = true
    /// Whether each connection performs and answers its requests strictly one at a time, in the order
    /// received, as nbdkit with `-t 1` does: slow and suspending operations then run on the
    /// connection's thread too, and the next request is read only after the previous one's reply
    /// was queued. For clients that cannot take replies out of order. The default, `false`, lets
    /// slow and suspending requests (up to ``maximumSlowRequestsPerConnection``) run while later
    /// requests are served.
    public var servesRequestsInOrder = false
    /// Whether `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT` are answered (the default).
    /// With `false` they get `NBD_REP_ERR_UNSUP`, so clients cannot ask for block status: nbdkit's
    /// `--no-meta-contexts`, for testing how clients cope with a server without meta contexts.
    public var offersMetaContexts = true
    /// How long a client may take, from the moment its connection is accepted, to finish the whole
    /// handshake (TLS included) and reach the transmission phase; past it the connection is dropped.
    /// nbdkit's `--timeout`. `nil` (the default) sets no such limit; ``handshakeTimeout``, the limit
    /// between bytes, applies either way, so this one stops a client that trickles bytes slowly.
    public var negotiationTimeout: Duration?
    /// Whether accepted TCP connections get `SO_KEEPALIVE`, so that the kernel notices a client
    /// machine that vanished (rebooted, cut off) on an idle connection: nbdkit's `--keepalive`. The
    /// probes' timing is the kernel's (`net.ipv4.tcp_keepalive_*`). Unix sockets are unaffected.
    public var enablesTCPKeepAlive = false
    /// How long, on average, the reads performed while the end of a large reply waits for the
    /// client may take (`Documentation/Server.md`, "Threads and tasks"); above
    /// it, a connection sends each batch whole before it performs the next read, so a slow read
    /// never holds back the reply before it. 1 ms: a 1 MiB memory or page-cache read takes about a
    /// tenth of that. Tests that check the overlap itself raise it, because a sanitizer or a loaded
    /// machine can make any read take longer and would turn the overlap off.
    package var overlappedReadLimit: Duration = .milliseconds(1)

    /// Whether reads of at least 64 KiB (``fileDataMinimumLength``) whose bytes lie in a file, as
    /// the stack reports through `BlockBackend.fileRegion(count:at:)`, are sent with `sendfile`:
    /// the kernel passes the page-cache pages to the socket, so the data is not copied into the
    /// server's buffer and out again. Only over plain kernel sockets (never over TLS), for reads the
    /// connection performs itself (not slow or suspending ones), and where structured-read hole
    /// detection (``holeDetectionThreshold``) does not apply. The reply's bytes are the same either
    /// way. The default is `true`; `false` copies every read, as before.
    /// See `Documentation/Server.md`, "Reads sent from files".
    public var sendsFileDataWithoutCopying = true

    /// The smallest read sent with `sendfile` (see ``sendsFileDataWithoutCopying``): below it the
    /// copy is cheap, and a small reply is better sent with the others of its batch in one `send`.
    public static var fileDataMinimumLength: Int { 64 << 10 }

    /// Makes `sendfile` stop after this many bytes of each read, as if it had failed there, so
    /// tests can check the fallback (`pread` and a copy). `Int.max` (the default) never does.
    package var sendFileLimit: Int = .max

    /// The most memory, in bytes, that large request and reply payloads (reads and writes of more
    /// than 64 KiB) may take at once, over all connections; `nil` for no limit. Past it the server
    /// stops reading new requests until replies have been sent and buffers freed, so no set of
    /// clients can drive it out of memory (see `Documentation/Server.md`, "Payload memory budget").
    ///
    /// The default is a quarter of the machine's physical memory
    /// (``defaultPayloadMemoryBudget``). Smaller payloads are not counted: they live in each
    /// connection's fixed buffers (the receive buffer, a batch of replies). A connection takes at
    /// most a quarter of the budget while others wait (one request of any size when it holds
    /// nothing), so a client that stops reading its replies cannot stall the others. A budget
    /// smaller than a request serves such requests one at a time.
    public var payloadMemoryBudget: Int? = ServerConfiguration.defaultPayloadMemoryBudget

    /// A quarter of the machine's physical memory (`sysconf(_SC_PHYS_PAGES)`), or 1 GiB when it
    /// cannot be read: the default ``payloadMemoryBudget``.
    public static var defaultPayloadMemoryBudget: Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return 1 << 30 }
        return pages.multipliedReportingOverflow(by: pageSize).partialValue / 4
    }

    /// Whether clients may (``TLSMode/on``) or must (``TLSMode/require``) upgrade to TLS with
    /// `NBD_OPT_STARTTLS`; nbdkit's `--tls`. Anything but ``TLSMode/off`` needs
    /// ``secureTransport``. The default is ``TLSMode/off``. See `Documentation/TLS.md`.
    public var tls: TLSMode = .off
    /// What runs the TLS handshake and sessions, such as `NBDTLS`'s `TLSServerTransport`; `nil`
    /// (the default) for none. ``handshakeTimeout`` covers the TLS handshake too.
    public var secureTransport: (any SecureTransport)? = nil

    /// Sends a problem an operator should see to ``errorLogger``, or to ``logger`` when there is none.
    func reportProblem(_ message: String) {
        if let errorLogger { errorLogger(message) } else { logger?(message) }
    }

    /// Whether an event of `level` reaches anyone, so callers build events only when they do.
    func wants(_ level: ServerEvent.Level) -> Bool {
        eventHandler != nil || logger != nil || (level >= .error && errorLogger != nil)
    }

    /// Delivers an event to ``eventHandler`` and, as text, to the string loggers: ``ServerEvent/Level/error``
    /// and above as a problem (``errorLogger``, else ``logger``), the rest to ``logger``.
    func emit(
        _ kind: ServerEvent.Kind, _ level: ServerEvent.Level, _ message: @autoclosure () -> String,
        _ metadata: @autoclosure () -> [String: String] = [:]
    ) {
        guard wants(level) else { return }
        let event = ServerEvent(kind: kind, level: level, message: message(), metadata: metadata())
        eventHandler?(event)
        if level >= .error {
            reportProblem(event.text)
        } else {
            logger?(event.text)
        }
    }

    /// Creates a configuration with the defaults described on each property.
    public init(
        isReadOnly: Bool = false,
        exportDescription: String = "",
        maximumPayload: UInt32 = 32 << 20,
        maximumDiscardedPayload: UInt64 = 256 << 20,
        maximumOptionLength: UInt32 = 64 << 10,
        maximumConnections: Int = 64,
        maximumSlowRequestsPerConnection: Int = 16,
        slowOperationThreads: Int = 16,
        inlineSlowOperationThreshold: Duration? = .microseconds(20),
        receiveBufferSize: Int = 256 << 10,
        sendBatchSize: Int = 256 << 10,
        unixSocketSendBufferSize: Int? = 4 << 20,
        holeDetectionThreshold: Int? = nil,
        handshakeTimeout: Duration? = .seconds(60),
        shutdownGracePeriod: Duration = .seconds(30),
        logger: (@Sendable (String) -> Void)? = nil
    ) {
        self.isReadOnly = isReadOnly
        self.exportDescription = exportDescription
        self.maximumPayload = maximumPayload
        self.maximumDiscardedPayload = maximumDiscardedPayload
        self.maximumOptionLength = maximumOptionLength
        self.maximumConnections = maximumConnections
        self.maximumSlowRequestsPerConnection = maximumSlowRequestsPerConnection
        self.slowOperationThreads = slowOperationThreads
        self.inlineSlowOperationThreshold = inlineSlowOperationThreshold
        self.receiveBufferSize = receiveBufferSize
        self.sendBatchSize = sendBatchSize
        self.unixSocketSendBufferSize = unixSocketSendBufferSize
        self.holeDetectionThreshold = holeDetectionThreshold
        self.handshakeTimeout = handshakeTimeout
        self.shutdownGracePeriod = shutdownGracePeriod
        self.logger = logger
    }
}

import NBDClient
import NBDCore
import NBDWire
import NBDTLSClient

/// An export served from another NBD server (nbdkit's `nbd` plugin): each client connection gets an
/// upstream connection of its own, or all share one, and every request, error and capability passes
/// through.
///
/// ```swift
/// let upstream = try await NBDProxyProvider(endpoint: .unix("/run/qemu-nbd.sock"))
/// let server = NBDServer(provider: upstream)
/// ```
///
/// - Capabilities are the upstream's: size, read-only, flush, FUA, trim, zero, fast zero, cache,
///   block status, multi-conn and block sizes (a maximum payload above 32 MiB is served as 32 MiB).
///   Every operation is declared suspending (`Capabilities.suspendingOperations`): the server keeps
///   several of one client's requests in flight upstream, starting each on the connection's thread
///   and writing its reply from the thread that received the upstream's reply.
/// - The upstream connection asks for extended headers (`ClientConfiguration.extendedHeaders`):
///   when the upstream agrees (qemu-nbd 8.2 and later), a zero, trim or block status of more than
///   4 GiB goes upstream as one request; otherwise it is split into requests below 4 GiB.
/// - Errors keep the upstream's errno and, with structured replies, its message. A flush or FUA
///   write is acknowledged only after the upstream acknowledged it.
/// - TLS: an endpoint with `NBDEndpoint.tls` options (an `nbds://` URI, or the `tls=`
///   parameters) connects through NBDTLSClient's `GnuTLSClientProvider`.
/// - When the upstream closes or dies, every request in flight and every later one on that client
///   connection fails with `ESHUTDOWN` or `EIO`; a new client connection opens a new upstream one
///   (with `shared`, the one shared connection stays failed).
public struct NBDProxyProvider: BackendProvider {
    /// Where the upstream server listens.
    public let endpoint: NBDEndpoint
    /// The upstream export name.
    public let exportName: String
    /// How many times a failed connect is retried, one second apart.
    public let retries: Int
    /// Whether connections are opened for reading only (`-r`).
    public let isReadOnly: Bool
    /// How the upstream connections negotiate.
    public let configuration: ClientConfiguration
    private let sharedConnection: NBDConnection?
    /// Waits before retry number `attempt` (1-based): one second, or what a test substitutes.
    private let pauseBeforeRetry: @Sendable (Int) async -> Void

    /// One second, nbdkit's pause between connection attempts.
    package static let oneSecondPause: @Sendable (Int) async -> Void = { _ in try? await Task.sleep(for: .seconds(1)) }

    /// Creates the provider. With `shared`, connects now (retrying as told) and serves every client
    /// over that one connection; otherwise connects once per client connection, when it opens.
    ///
    /// - Throws: `NBDError` when `shared` and the upstream cannot be reached.
    public init(
        endpoint: NBDEndpoint, exportName: String = "", shared: Bool = false, retries: Int = 0,
        isReadOnly: Bool = false, configuration: ClientConfiguration = ClientConfiguration()
    ) async throws(NBDError) {
        try await self.init(
            endpoint: endpoint, exportName: exportName, shared: shared, retries: retries, isReadOnly: isReadOnly,
            configuration: configuration, pauseBeforeRetry: Self.oneSecondPause)
    }

    /// Creates the provider with another pause between connection attempts (for tests, which must
    /// not depend on timing: the pause can start the upstream).
    package init(
        endpoint: NBDEndpoint, exportName: String = "", shared: Bool = false, retries: Int = 0,
        isReadOnly: Bool = false, configuration: ClientConfiguration = ClientConfiguration(),
        pauseBeforeRetry: @escaping @Sendable (Int) async -> Void
    ) async throws(NBDError) {
        self.endpoint = endpoint
        self.pauseBeforeRetry = pauseBeforeRetry
        self.exportName = exportName
        self.retries = max(retries, 0)
        self.isReadOnly = isReadOnly
        self.configuration = configuration
        if shared {
            // Every client's replies would be written by the one reader thread: a client that stops
            // reading would hold up everyone's. Requests resume on the server's pool instead.
            var sharedConfiguration = configuration
            sharedConfiguration.resumesCallersOnReaderThread = false
            sharedConnection = try await Self.connect(
                endpoint, exportName, retries: retries, sharedConfiguration, pause: pauseBeforeRetry)
        } else {
            sharedConnection = nil
        }
    }

    /// Whether one upstream connection serves every client.
    public var isShared: Bool { sharedConnection != nil }

    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> NBDProxyBackend {
        let upstream: NBDConnection
        if let sharedConnection {
            if let reason = sharedConnection.closedReason {
                throw NBDError(
                    reason.code, "the shared upstream connection to \(endpoint) is closed: \(reason.message)")
            }
            upstream = sharedConnection
        } else {
            upstream = try await Self.connect(
                endpoint, exportName, retries: retries, configuration, pause: pauseBeforeRetry)
        }
        var capabilities = upstream.export.capabilities
        // Every request waits for the upstream's reply by suspending, never by holding a thread.
        capabilities.slowOperations = []
        capabilities.suspendingOperations = .all
        if isReadOnly || connection.isReadOnly { capabilities = capabilities.readOnly }
        // Large writes are sent from a thread of their own while the connection thread receives the
        // next request. Not over a shared connection, whose replies resume on the server's pool.
        let forwarder =
            sharedConnection == nil && configuration.resumesCallersOnReaderThread && capabilities.isWritable
            ? ThreadExecutor(name: "nbd-forward", runsResumptionsInline: true) : nil
        return NBDProxyBackend(
            upstream: upstream, ownsConnection: sharedConnection == nil, capabilities: capabilities,
            forwarder: forwarder)
    }

    public func shutdown() async {
        await sharedConnection?.disconnect()
    }

    /// Connects, retrying `retries` more times one second apart when the connect or handshake fails.
    private static func connect(
        _ endpoint: NBDEndpoint, _ exportName: String, retries: Int, _ configuration: ClientConfiguration,
        pause: @Sendable (Int) async -> Void
    ) async throws(NBDError) -> NBDConnection {
        var attempt = 0
        while true {
            do {
                // TLS (an endpoint with TLS options) goes through GnuTLS, in NBDTLSClient.
                return try await NBDConnection.connect(
                    to: endpoint, exportName: exportName, configuration: configuration,
                    tlsProvider: endpoint.tls == nil ? nil : GnuTLSClientProvider())
            } catch {
                guard attempt < retries else { throw error }
                attempt += 1
                await pause(attempt)
            }
        }
    }
}

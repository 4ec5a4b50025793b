import NBDCore
import NBDWire
import Synchronization

/// An NBD server that serves one export, a `BackendProvider` (typically a
/// `FilterStack`), to any number of clients over Unix or TCP sockets.
///
/// ```swift
/// let server = NBDServer(provider: FilterStack([MultiConnLayer()], over: try MemoryBackendProvider(size: 1 << 30)))
/// let address = try server.listen(on: .unix(path: "/tmp/nbd.sock"))
/// print("serving on", address.uri)
/// // ... later, e.g. on SIGTERM:
/// await server.shutdown()
/// ```
///
/// Every connection opens its own backend with `provider.open(_:)` during the handshake and closes
/// it once after its last request. Every export name is accepted and passed to the provider (`""`
/// as the provider's `defaultExport`); `NBD_OPT_LIST` answers with the provider's `listExports`, and
/// a client is dropped before the greeting when the provider's `preconnect` throws. The provider
/// receives a `ServerControl` at creation, through which it may stop the server or close a
/// connection.
///
/// Each connection runs on a thread of its own; see `Documentation/Server.md` for the threading
/// design.
public final class NBDServer: Sendable {
    private struct State {
        var listeners: [Listener] = []
        var stopping = false
        var finished = false
        var finishedWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// The configuration the server was created with.
    public let configuration: ServerConfiguration
    let context: ServerContext
    private let startConnection: @Sendable (UInt64, Socket, ServerContext) -> Bool
    private let shutdownProvider: @Sendable () async -> Void
    private let state = LockedValue(State())

    /// How many bytes of read data all connections sent straight from files with `sendfile` so far
    /// (see ``ServerConfiguration/sendsFileDataWithoutCopying``).
    package var bytesSentFromFiles: Int { context.bytesSentFromFiles.load(ordering: .relaxed) }

    /// Creates a server for `provider`. Nothing listens until ``listen(on:)``.
    public init<Provider: BackendProvider>(
        provider: Provider, configuration: ServerConfiguration = ServerConfiguration()
    ) {
        self.configuration = configuration
        self.context = ServerContext(configuration: configuration)
        self.startConnection = { id, socket, context in
            Connection.start(id: id, socket: socket, provider: provider, context: context)
        }
        self.shutdownProvider = { await provider.shutdown() }
        // The stack may stop the server (nbdkit_shutdown) or close one client (nbdkit_disconnect)
        // without knowing the server: through a control that holds the server weakly.
        let context = self.context
        provider.attach(
            ServerControl(
                requestShutdown: { [weak self] in
                    guard let self else { return }
                    Task { await self.shutdown(lettingClientsFinish: true) }
                },
                disconnect: { id in context.disconnect(id) }))
    }

    /// Binds `address` and starts accepting connections on it. May be called more than once to
    /// listen on several addresses.
    ///
    /// - Returns: The bound address; for TCP port 0, the port the system picked.
    /// - Throws: `NBDError` if the address cannot be bound, the server is shutting down, or
    ///   ``ServerConfiguration/tls`` asks for TLS without a ``ServerConfiguration/secureTransport``.
    @discardableResult
    public func listen(on address: ListenAddress) throws(NBDError) -> ListenAddress {
        try checkSecureTransport()
        return try start(try Listener(address))
    }

    /// Accepts connections on `descriptor`, a socket that is already bound and listening, such as
    /// the one systemd socket activation (or libnbd's `nbd_connect_systemd_socket_activation`)
    /// passes as descriptor 3. The server owns the descriptor from now on and closes it when it
    /// stops; a Unix socket's file is left in place, since whoever bound it owns it.
    ///
    /// - Returns: The address the socket is bound to.
    /// - Throws: `NBDError` (`.invalidArgument`) if `descriptor` is not a listening Unix or TCP
    ///   socket (it is then left open), or as ``listen(on:)``.
    @discardableResult
    public func listen(adoptingListeningSocket descriptor: Int32) throws(NBDError) -> ListenAddress {
        try checkSecureTransport()
        return try start(try Listener(adopting: descriptor))
    }

    /// Serves one client already connected on `descriptor` (a stream socket, such as standard input
    /// under inetd or a parent process's socket pair: nbdkit's `-s`) and returns when that
    /// connection has ended. The server owns the descriptor from now on and closes it.
    ///
    /// - Throws: `NBDError` if the server is stopping or at its connection limit, or if no thread
    ///   could be started (the descriptor is then closed), or as ``listen(on:)`` for TLS.
    public func serve(connectedSocket descriptor: Int32) async throws(NBDError) {
        try checkSecureTransport()
        guard let id = Self.accept(Socket(adopting: descriptor), context: context, startConnection: startConnection) else {
            throw NBDError(.shutdown, "the server is stopping or at its connection limit")
        }
        await context.waitForEnd(of: id)
    }

    private func checkSecureTransport() throws(NBDError) {
        if configuration.tls != .off && configuration.secureTransport == nil {
            throw NBDError(
                .invalidArgument,
                "TLS is '\(configuration.tls.rawValue)' but no secure transport is configured: set ServerConfiguration.secureTransport (for example NBDTLS's TLSServerTransport)"
            )
        }
    }

    /// Registers `listener` and starts accepting on it.
    private func start(_ listener: Listener) throws(NBDError) -> ListenAddress {
        let registered = state.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.listeners.append(listener)
            return true
        }
        guard registered else {
            listener.closeWithoutStarting()
            throw NBDError(.shutdown, "the server is shutting down")
        }
        // The accept thread holds the context, not the server (as before adoption existed).
        let context = self.context
        let startConnection = self.startConnection
        try listener.start { socket in _ = Self.accept(socket, context: context, startConnection: startConnection) }
        context.configuration.emit(
            .listening, .info, "listening on \(listener.address)", ["address": listener.address.uri(exportName: "")])
        return listener.address
    }

    /// Starts a connection on `socket`; returns its ID, or `nil` (the socket closed) when it was
    /// refused.
    private static func accept(
        _ socket: Socket, context: ServerContext,
        startConnection: @Sendable (UInt64, Socket, ServerContext) -> Bool
    ) -> UInt64? {
        if let size = context.configuration.unixSocketSendBufferSize {
            socket.setUnixSendBufferSize(size)
        }
        if context.configuration.enablesTCPKeepAlive {
            socket.enableKeepAliveIfTCP()
        }
        guard let id = context.register(socket) else {
            context.warn(
                .connectionLimitReached,
                "refused a connection: the server is stopping or has \(context.configuration.maximumConnections) connections, its maximum (ServerConfiguration.maximumConnections)"
            )
            socket.shutdownBoth()
            return nil
        }
        if !startConnection(id, socket, context) {
            context.log("refused a connection: no thread could be started for it")
            socket.shutdownBoth()
            context.connectionEnded(id)
            return nil
        }
        return id
    }

    /// The addresses the server listens on, with real port numbers.
    public var addresses: [ListenAddress] {
        state.withLock { $0.listeners.map(\.address) }
    }

    /// Returns when the server has shut down, after ``shutdown()`` completed its work.
    ///
    /// Cancelling the task that runs it is a way to shut the server down: the cancellation starts a
    /// graceful ``shutdown()`` (requests already received are answered, backends are closed, the
    /// provider's `shutdown()` runs) and `run()` returns once it is done, not before. So a server
    /// lives inside any structured-concurrency owner, a task group or swift-service-lifecycle's
    /// `ServiceGroup`, and nothing it acknowledged is lost when that owner cancels it. Shutting down
    /// takes at most about ``ServerConfiguration/shutdownGracePeriod`` plus the backends' close.
    ///
    /// ```swift
    /// let serving = Task { await server.run() }
    /// // ...
    /// serving.cancel()
    /// await serving.value   // the server has drained and closed every backend
    /// ```
    ///
    /// Several tasks may run it at once; each returns when the server has shut down, and
    /// cancelling any of them shuts the server down.
    public func run() async {
        await withTaskCancellationHandler {
            await waitUntilFinished()
        } onCancel: {
            // The handler may not suspend; the shutdown runs in a task of its own, which is not
            // cancelled, and `waitUntilFinished` above returns when it has finished.
            Task { await self.shutdown() }
        }
    }

    /// Returns when ``shutdown()`` has finished; cancellation does not end the wait.
    private func waitUntilFinished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = state.withLock { state -> Bool in
                if state.finished { return true }
                state.finishedWaiters.append(continuation)
                return false
            }
            if finished { continuation.resume() }
        }
    }

    /// Stops the server gracefully and returns when it is done: stops accepting, lets every
    /// connection finish the requests it has already received (their replies are sent), closes every
    /// backend, then calls the provider's `shutdown()` (which runs the filter layers' shutdown, such as
    /// writing a statistics report). Connections still alive after
    /// ``ServerConfiguration/shutdownGracePeriod`` are closed. Calling it again waits for the first
    /// call to finish.
    public func shutdown() async {
        await shutdown(lettingClientsFinish: false)
    }

    /// Shuts down; with `lettingClientsFinish` (a ``ServerControl/requestShutdown()`` from the
    /// stack, as nbdkit_shutdown) connected clients are not woken or closed but served until they
    /// disconnect. A later plain ``shutdown()`` still wakes and closes them.
    private func shutdown(lettingClientsFinish: Bool) async {
        let (first, listeners) = state.withLock { state -> (Bool, [Listener]) in
            if state.stopping { return (false, []) }
            state.stopping = true
            return (true, state.listeners)
        }
        let context = self.context
        let gracePeriod = configuration.shutdownGracePeriod
        guard first else {
            if !lettingClientsFinish {
                // A gentle shutdown may be waiting for its clients: make it a normal one.
                context.beginStopping()
                let enforcer = Task {
                    try? await Task.sleep(for: gracePeriod)
                    if !Task.isCancelled { context.closeRemainingConnections() }
                }
                await waitUntilFinished()
                enforcer.cancel()
                return
            }
            await waitUntilFinished()
            return
        }
        context.configuration.emit(
            .shutdownBegan, .info, "stopping", ["connections": String(context.openConnections)])
        for listener in listeners { listener.stop() }
        context.beginStopping(wakingConnections: !lettingClientsFinish)
        let enforcer = Task {
            guard !lettingClientsFinish else { return }
            try? await Task.sleep(for: gracePeriod)
            if !Task.isCancelled { context.closeRemainingConnections() }
        }
        await context.waitUntilDrained()
        enforcer.cancel()
        await shutdownProvider()
        context.pool.stop()
        // Logged before `run()` returns, so that a program that logs after `run()` sees it last.
        context.configuration.emit(.shutdownFinished, .info, "server stopped")
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.finished = true
            defer { state.finishedWaiters = [] }
            return state.finishedWaiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

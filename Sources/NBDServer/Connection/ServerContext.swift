import NBDCore
import NBDWire
import Synchronization

/// What every connection of a server shares: the configuration, the slow-operation pool and the
/// registry of live connections (so shutdown can wake them and wait for them).
final class ServerContext: Sendable {
    struct State {
        var connections: [UInt64: Socket] = [:]
        var stopping = false
        var drainedWaiters: [CheckedContinuation<Void, Never>] = []
        /// Who waits for one connection's end (``NBDServer/serve(connectedSocket:)``).
        var endWaiters: [UInt64: [CheckedContinuation<Void, Never>]] = [:]
    }

    let configuration: ServerConfiguration
    let pool: SlowOperationPool
    /// Runs requests whose operation suspends (see ``SuspendedRequestExecutor``).
    let suspendedRequests: SuspendedRequestExecutor
    let state = LockedValue(State())
    /// The budget every connection's large payloads are charged to.
    let payloadBudget: PayloadBudget
    /// The read data every connection sent with `sendfile` so far, in bytes (for tests).
    let bytesSentFromFiles = Atomic<Int>(0)

    init(configuration: ServerConfiguration) {
        self.configuration = configuration
        self.payloadBudget = PayloadBudget(limit: configuration.payloadMemoryBudget)
        self.pool = SlowOperationPool(threads: configuration.slowOperationThreads)
        self.suspendedRequests = SuspendedRequestExecutor(fallback: pool)
    }

    /// Whether `NBD_FLAG_CAN_MULTI_CONN` may be advertised at all: only if a second connection can
    /// actually be accepted.
    var acceptsMultipleConnections: Bool { configuration.maximumConnections > 1 }

    var isShuttingDown: Bool { state.withLock { $0.stopping } }

    /// Reports a problem an operator should see (see ``ServerConfiguration/errorLogger``).
    func warn(_ message: @autoclosure () -> String) {
        configuration.emit(.message, .error, message())
    }

    /// Reports a problem of a known kind an operator should see.
    func warn(_ kind: ServerEvent.Kind, _ message: @autoclosure () -> String) {
        configuration.emit(kind, .error, message())
    }

    func log(_ message: @autoclosure () -> String) {
        configuration.emit(.message, .debug, message())
    }

    /// How many connections are registered now.
    var openConnections: Int { state.withLock { $0.connections.count } }

    /// Registers an accepted socket. Returns its connection ID, or `nil` if the server is stopping
    /// or already serves the maximum number of connections.
    func register(_ socket: Socket) -> UInt64? {
        let id = ConnectionInfo.nextID()
        let accepted = state.withLock { state -> Bool in
            guard !state.stopping, state.connections.count < configuration.maximumConnections else { return false }
            state.connections[id] = socket
            return true
        }
        return accepted ? id : nil
    }

    /// Called once per registered connection, after its backend was closed.
    func connectionEnded(_ id: UInt64) {
        var remaining = 0
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.connections[id] = nil
            remaining = state.connections.count
            var waiters = state.endWaiters.removeValue(forKey: id) ?? []
            guard state.stopping, state.connections.isEmpty else { return waiters }
            waiters += state.drainedWaiters
            state.drainedWaiters = []
            return waiters
        }
        configuration.emit(
            .connectionClosed, .info, "ended; \(remaining) connection(s) open",
            ["connection": String(id), "connections": String(remaining)])
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until connection `id` has ended (at once if it already has).
    func waitForEnd(of id: UInt64) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ended = state.withLock { state -> Bool in
                guard state.connections[id] != nil else { return true }
                state.endWaiters[id, default: []].append(continuation)
                return false
            }
            if ended { continuation.resume() }
        }
    }

    /// Stops new connections and wakes every live one: a blocked `recv` returns end of stream, so
    /// each connection finishes the requests it already read, replies, and closes its backend.
    /// With `wakingConnections` false the live ones are left to end when their clients disconnect.
    func beginStopping(wakingConnections: Bool = true) {
        let sockets = state.withLock { state -> [Socket] in
            state.stopping = true
            return Array(state.connections.values)
        }
        guard wakingConnections else { return }
        for socket in sockets { socket.shutdownReading() }
    }

    /// Closes connection `id` if it is still alive (a filter's ``ServerControl/disconnect(connection:)``):
    /// both directions stop, so its client sees end of stream and its requests end.
    func disconnect(_ id: UInt64) {
        let socket = state.withLock { $0.connections[id] }
        guard let socket else { return }
        log("connection \(id): disconnected at the stack's request")
        socket.shutdownBoth()
    }

    /// Closes both directions of every connection still alive: a blocked `send` fails, so even a
    /// client that stopped reading cannot hold shutdown up.
    func closeRemainingConnections() {
        let sockets = state.withLock { Array($0.connections.values) }
        if !sockets.isEmpty {
            log("closing \(sockets.count) connection(s) that did not finish within the shutdown grace period")
        }
        for socket in sockets { socket.shutdownBoth() }
    }

    /// Waits until every connection has ended. Call after ``beginStopping()``.
    func waitUntilDrained() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.connections.isEmpty { return true }
                state.drainedWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }
}

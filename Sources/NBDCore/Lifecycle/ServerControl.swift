/// What a backend or filter may ask of the server that serves it, without knowing that server:
/// nbdkit's `nbdkit_shutdown` and `nbdkit_disconnect`.
///
/// The server gives its control to the provider once, through ``BackendProvider/attach(_:)``
/// (``FilterStack`` passes it to each layer's ``FilterLayer/attach(_:)``), before it accepts clients.
///
/// ```swift
/// func attach(_ control: ServerControl) {
///     self.control.withLock { $0 = control }   // later: control.requestShutdown()
/// }
/// ```
public struct ServerControl: Sendable {
    private let shutdown: @Sendable () -> Void
    private let disconnectConnection: @Sendable (UInt64) -> Void

    /// Creates a control from the server's two actions.
    ///
    /// - Parameters:
    ///   - requestShutdown: Stops accepting clients, lets the connected ones finish, then stops.
    ///   - disconnect: Closes the connection with the given ``ConnectionInfo/id``.
    public init(
        requestShutdown: @escaping @Sendable () -> Void, disconnect: @escaping @Sendable (UInt64) -> Void = { _ in }
    ) {
        self.shutdown = requestShutdown
        self.disconnectConnection = disconnect
    }

    /// A control that does nothing, for a provider used without a server.
    public static var detached: ServerControl { ServerControl(requestShutdown: {}) }

    /// Asks the server to stop gracefully: it refuses new clients, lets the connected ones finish
    /// and disconnect, then shuts down (nbdkit's `nbdkit_shutdown`). Returns at once; calling it
    /// again does nothing more.
    public func requestShutdown() {
        shutdown()
    }

    /// Asks the server to close connection `id` (a ``ConnectionInfo/id``) as soon as it can; its
    /// requests in flight may fail (nbdkit's `nbdkit_disconnect`). Returns at once.
    public func disconnect(connection id: UInt64) {
        disconnectConnection(id)
    }
}

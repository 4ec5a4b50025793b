/// A configured filter that can wrap any connection's stack at run time: the dynamic form of a
/// ``Filter``, used for stacks built from a command line or a configuration file.
///
/// One layer value serves every connection of a server, so it holds what the filter shares between
/// connections (a ``MultiConn`` coordinator, a statistics collector) and its parameters.
public protocol FilterLayer: Sendable {
    /// The filter's name as used on the command line, such as `multi-conn`.
    var name: String { get }

    /// Wraps one connection's stack. Throwing refuses the connection (nbdkit's `prepare` failing).
    func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend

    /// Opens one connection's stack from this layer down, given a function that opens everything
    /// below it (the filters under this one and the export) and may be called again.
    ///
    /// A filter that must reopen what lies below it, such as the retry filter after a failure (nbdkit's
    /// `nbdkit_next_context_open`), implements this and keeps `openBelow`. Every other filter keeps the
    /// default: open below once and ``wrap(_:for:)`` the result, closing it again if `wrap` throws.
    /// ``FilterStack`` opens connections through this requirement.
    func open(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow) async throws(NBDError)
        -> AnyBlockBackend

    /// Called once when the server stops, after every connection closed.
    func shutdown() async

    /// Decides whether a client may start the handshake (nbdkit's `preconnect`), then lets the
    /// layers below decide by calling `below`. Throwing drops the client. The default calls `below`.
    func preconnect(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> Void
    ) async throws(NBDError)

    /// The exports to advertise (nbdkit's `list_exports`), given the list of the layers below
    /// through `below`. The default returns `below`'s list.
    func listExports(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> [ExportEntry]
    ) async throws(NBDError) -> [ExportEntry]

    /// The name the default export `""` stands for (nbdkit's `default_export`), given the layers
    /// below's answer through `below`. The default returns `below`'s answer.
    func defaultExport(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> String
    ) async throws(NBDError) -> String

    /// Receives the server's control before it accepts clients (see ``BackendProvider/attach(_:)``).
    /// The default ignores it.
    func attach(_ control: ServerControl)
}

/// Opens everything below one ``FilterLayer`` for a connection: the filters under it and the export.
/// Each call opens a new, independent stack (a new backend for each layer below); the caller owns it
/// and must ``BlockBackend/close()`` it.
public typealias OpenBelow = @Sendable (ConnectionInfo) async throws(NBDError) -> AnyBlockBackend

extension FilterLayer {
    public func shutdown() async {}

    /// Lets the layers below decide.
    public func preconnect(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> Void
    ) async throws(NBDError) {
        try await below(connection)
    }

    /// The layers below's list.
    public func listExports(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> [ExportEntry]
    ) async throws(NBDError) -> [ExportEntry] {
        try await below(connection)
    }

    /// The layers below's default export.
    public func defaultExport(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> String
    ) async throws(NBDError) -> String {
        try await below(connection)
    }

    /// Ignores the server's control.
    public func attach(_ control: ServerControl) {}

    /// Opens below once and wraps the result; closes what was opened if ``wrap(_:for:)`` throws.
    public func open(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow) async throws(NBDError)
        -> AnyBlockBackend
    {
        let next = try await openBelow(connection)
        do {
            return try await wrap(next, for: connection)
        } catch {
            // The layers below were opened for this connection; release them before refusing it.
            await next.close()
            throw error
        }
    }
}

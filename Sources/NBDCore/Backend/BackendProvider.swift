/// An export: something that opens one ``BlockBackend`` per client connection, as an nbdkit plugin's
/// `open` does.
///
/// ```swift
/// let provider = try MemoryBackendProvider(size: 1 << 30)
/// let backend = try await provider.open(ConnectionInfo(exportName: ""))
/// ```
///
/// Besides `open`, a provider may answer what nbdkit asks of a plugin during the handshake
/// (``preconnect(_:)``, ``listExports(_:)``, ``defaultExport(_:)``) and keep the server's
/// ``ServerControl`` (``attach(_:)``). Each has a default that gives the server's usual behaviour.
public protocol BackendProvider: Sendable {
    /// The concrete backend each connection gets.
    associatedtype Backend: BlockBackend

    /// Opens the backend for one connection. Throwing refuses the connection: the client's
    /// `NBD_OPT_GO` fails and it may try again.
    func open(_ connection: ConnectionInfo) async throws(NBDError) -> Backend

    /// Called once when the server stops, after every connection closed (write reports, release
    /// shared resources).
    func shutdown() async

    /// Called when a client connects, before the handshake (nbdkit's `preconnect`): `connection`
    /// has the peer but no export name yet. Throwing drops the client at once, without a reply.
    /// The default accepts every client.
    func preconnect(_ connection: ConnectionInfo) async throws(NBDError)

    /// The exports to advertise to a client that sends `NBD_OPT_LIST` (nbdkit's `list_exports`);
    /// `connection` has the peer, ``ConnectionInfo/isTLS`` and ``ConnectionInfo/isReadOnly``.
    /// Throwing answers the option with an error. The default lists ``defaultExport(_:)`` alone.
    func listExports(_ connection: ConnectionInfo) async throws(NBDError) -> [ExportEntry]

    /// The name the default export `""` stands for (nbdkit's `default_export`): the server opens
    /// this name when a client asks for `""` and reports it as the export's name. The default is
    /// `""` itself.
    func defaultExport(_ connection: ConnectionInfo) async throws(NBDError) -> String

    /// Receives the server's control before it accepts clients (a provider served by no server
    /// never receives one). Keep it to ask for a shutdown or a disconnection later. The default
    /// ignores it.
    func attach(_ control: ServerControl)
}

extension BackendProvider {
    public func shutdown() async {}

    /// Accepts every client.
    public func preconnect(_ connection: ConnectionInfo) async throws(NBDError) {}

    /// Lists the default export alone.
    public func listExports(_ connection: ConnectionInfo) async throws(NBDError) -> [ExportEntry] {
        [ExportEntry(name: try await defaultExport(connection))]
    }

    /// The default export is called `""`.
    public func defaultExport(_ connection: ConnectionInfo) async throws(NBDError) -> String { "" }

    /// Ignores the server's control.
    public func attach(_ control: ServerControl) {}
}

/// An export: something that opens one ``BlockBackend`` per client connection, as an nbdkit plugin's
/// `open` does.
///
/// ```swift
/// let provider = try MemoryBackendProvider(size: 1 << 30)
/// let backend = try await provider.open(ConnectionInfo(exportName: ""))
/// ```
public protocol BackendProvider: Sendable {
    /// The concrete backend each connection gets.
    associatedtype Backend: BlockBackend

    /// Opens the backend for one connection. Throwing refuses the connection: the client's
    /// `NBD_OPT_GO` fails and it may try again.
    func open(_ connection: ConnectionInfo) async throws(NBDError) -> Backend

    /// Called once when the server stops, after every connection closed (write reports, release
    /// shared resources).
    func shutdown() async
}

extension BackendProvider {
    public func shutdown() async {}
}

import NBDCore

/// nbdkit's info plugin: a read-only export that shows the client something about itself or the
/// server — its export name (raw or base64-decoded), its address, or a clock — for testing clients
/// and measuring latency.
///
/// ```swift
/// let export = InfoBackendProvider(mode: .exportName)
/// let backend = try await export.open(ConnectionInfo(exportName: "hello"))   // 5 bytes: hello
/// ```
public struct InfoBackendProvider: BackendProvider {
    public typealias Backend = InfoBackend

    /// What every connection is served.
    public let mode: InfoMode
    /// When the export was created: the uptime clock's zero.
    public let created: ContinuousClock.Instant

    /// Creates the export.
    public init(mode: InfoMode = .exportName) {
        self.mode = mode
        self.created = .now
    }

    /// Opens a connection's view.
    ///
    /// - Throws: `EINVAL` in ``InfoMode/base64ExportName`` when the export name is not base64.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> InfoBackend {
        switch mode {
        case .exportName:
            return InfoBackend(mode: mode, contents: Array(connection.exportName.utf8), origin: created)
        case .base64ExportName:
            guard let decoded = Base64.decode(connection.exportName) else {
                throw NBDError(.invalidArgument, "info: the export name is not valid base64 (mode=base64exportname)")
            }
            return InfoBackend(mode: mode, contents: decoded, origin: created)
        case .address:
            let text = connection.peer.map { "\($0)" } ?? "unknown"
            return InfoBackend(mode: mode, contents: Array(text.utf8), origin: created)
        case .time, .uptime:
            return InfoBackend(mode: mode, contents: [], origin: created)
        case .connTime:
            return InfoBackend(mode: mode, contents: [], origin: .now)
        }
    }
}

import NBDCore

/// nbdkit's tls-fallback filter: a client that did not negotiate TLS gets, whatever export it asks
/// for, a 512-byte read-only export holding a message, and nothing below the filter is opened for it;
/// a TLS client gets the real export. Use it with `--tls=on` (with `--tls=require` no plaintext client
/// gets this far). Put it first, so that no filter does work for plaintext clients.
public struct TLSFallbackLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// What plaintext clients read.
    public let message: String

    /// nbdkit's default message.
    public static var defaultMessage: String {
        "This NBD server requires TLS authentication before it will serve useful data.\n"
    }

    /// Creates the layer with `message` as the plaintext export's contents (cut to 512 bytes).
    public init(message: String = TLSFallbackLayer.defaultMessage) {
        self.message = message
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        next
    }

    /// A plaintext connection gets the message without opening anything below.
    public func open(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow) async throws(NBDError)
        -> AnyBlockBackend
    {
        guard connection.isTLS else { return AnyBlockBackend(TLSReadmeBackend(message: message)) }
        return try await openBelow(connection)
    }

    /// A plaintext client sees the default export alone.
    public func listExports(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> [ExportEntry]
    ) async throws(NBDError) -> [ExportEntry] {
        guard connection.isTLS else { return [ExportEntry(name: "")] }
        return try await below(connection)
    }

    /// A plaintext client's default export is `""`.
    public func defaultExport(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> String
    ) async throws(NBDError) -> String {
        guard connection.isTLS else { return "" }
        return try await below(connection)
    }
}

extension TLSFallbackLayer: ConfigurableFilterLayer {
    public static var filterName: String { "tls-fallback" }
    public static var summary: String {
        "serve plaintext clients a 512-byte read-only message instead of the export (use with --tls=on)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "tlsreadme", "what plaintext clients read, cut or zero-padded to 512 bytes",
                default: "This NBD server requires TLS authentication before it will serve useful data.")
        ]
    }

    /// Creates the layer from `tlsreadme=`.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(message: parameters["tlsreadme"] ?? Self.defaultMessage)
    }
}

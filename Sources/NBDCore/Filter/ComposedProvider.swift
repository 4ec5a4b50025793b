/// An export whose stack is fixed in code: a base provider and a function that wraps each
/// connection's backend in concrete filter types. The whole stack is one nested generic type, so a
/// request costs about one call per layer and needs no type erasure.
///
/// Build one with ``BackendProvider/wrapped(onShutdown:_:)``, innermost layer first:
///
/// ```swift
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in StatsFilter(wrapping: next, collector: stats) }
///     .wrapped { next, connection in try await multiConn.filter(wrapping: next, for: connection) }
/// ```
public struct ComposedProvider<Base: BackendProvider, Backend: BlockBackend>: BackendProvider {
    @usableFromInline let base: Base
    @usableFromInline let wrap: @Sendable (Base.Backend, ConnectionInfo) async throws -> Backend
    @usableFromInline let onShutdown: @Sendable () async -> Void

    /// Creates a provider that wraps every backend `base` opens with `wrap`; `onShutdown` runs after
    /// the base's own shutdown.
    ///
    /// `wrap` may throw any error (closures do not infer typed throws); an error that is not an
    /// ``NBDError`` refuses the connection as `EINVAL` with the error's description.
    public init(
        _ base: Base,
        onShutdown: @escaping @Sendable () async -> Void = {},
        wrap: @escaping @Sendable (Base.Backend, ConnectionInfo) async throws -> Backend
    ) {
        self.base = base
        self.wrap = wrap
        self.onShutdown = onShutdown
    }

    @inlinable
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> Backend {
        let inner = try await base.open(connection)
        do {
            return try await wrap(inner, connection)
        } catch {
            await inner.close()
            throw (error as? NBDError) ?? NBDError(.invalidArgument, "cannot open the stack: \(error)")
        }
    }

    public func shutdown() async {
        await base.shutdown()
        await onShutdown()
    }

    /// The base's answer: the wrapping layers do not take part in the handshake.
    public func preconnect(_ connection: ConnectionInfo) async throws(NBDError) {
        try await base.preconnect(connection)
    }

    /// The base's list.
    public func listExports(_ connection: ConnectionInfo) async throws(NBDError) -> [ExportEntry] {
        try await base.listExports(connection)
    }

    /// The base's default export.
    public func defaultExport(_ connection: ConnectionInfo) async throws(NBDError) -> String {
        try await base.defaultExport(connection)
    }

    /// Gives the control to the base.
    public func attach(_ control: ServerControl) {
        base.attach(control)
    }
}

extension BackendProvider {
    /// Wraps every connection's backend in one more layer, which becomes the new outermost layer.
    ///
    /// If `wrap` throws, the connection is refused and the inner backend is closed.
    public func wrapped<Wrapped: BlockBackend>(
        onShutdown: @escaping @Sendable () async -> Void = {},
        _ wrap: @escaping @Sendable (Backend, ConnectionInfo) async throws -> Wrapped
    ) -> ComposedProvider<Self, Wrapped> {
        ComposedProvider(self, onShutdown: onShutdown, wrap: wrap)
    }

    /// Places ``FeatureEmulation`` directly over this provider's backends, so that emulated FUA and
    /// emulated cache requests are carried out. Use it first when composing over a backend that
    /// reports ``FUASupport/emulated`` or ``CacheSupport/emulated``.
    public func emulatingFeatures() -> ComposedProvider<Self, FeatureEmulation<Backend>> {
        wrapped { next, _ in FeatureEmulation(wrapping: next) }
    }
}

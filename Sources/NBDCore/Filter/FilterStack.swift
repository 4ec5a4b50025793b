/// An export whose filters are chosen at run time: a base provider and a list of ``FilterLayer``s,
/// **outermost first**, as nbdkit orders `--filter` options.
///
/// ```swift
/// let stack = FilterStack(
///     [MultiConnLayer(), StatsLayer(collector)],   // client → multi-conn → stats → memory
///     over: try MemoryBackendProvider(size: 1 << 30)
/// )
/// ```
///
/// The base backend is wrapped in ``FeatureEmulation`` first, so a backend that reports emulated FUA
/// or cache gets them emulated below every filter, as nbdkit does at its plugin layer.
public struct FilterStack<Base: BackendProvider>: BackendProvider {
    /// The filters, outermost first.
    public let layers: [any FilterLayer]
    /// The export the filters wrap.
    public let base: Base

    /// Creates a stack; `layers[0]` is the outermost filter (the one the client talks to).
    public init(_ layers: [any FilterLayer], over base: Base) {
        self.layers = layers
        self.base = base
    }

    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        try await open(connection, from: 0)
    }

    /// Opens the stack from `layers[index]` down. Each layer receives a function that opens the rest,
    /// so a layer that must reopen what is below it (retry) can; the others call it once.
    private func open(_ connection: ConnectionInfo, from index: Int) async throws(NBDError) -> AnyBlockBackend {
        guard index < layers.count else {
            return AnyBlockBackend(FeatureEmulation(wrapping: try await base.open(connection)))
        }
        return try await layers[index].open(for: connection) { (below: ConnectionInfo) async throws(NBDError) in
            try await open(below, from: index + 1)
        }
    }

    /// Asks each layer, outermost first, then the base.
    public func preconnect(_ connection: ConnectionInfo) async throws(NBDError) {
        try await preconnect(connection, from: 0)
    }

    private func preconnect(_ connection: ConnectionInfo, from index: Int) async throws(NBDError) {
        guard index < layers.count else { return try await base.preconnect(connection) }
        try await layers[index].preconnect(connection) { (below: ConnectionInfo) async throws(NBDError) in
            try await preconnect(below, from: index + 1)
        }
    }

    /// The outermost layer's list, each layer seeing the list of the layers below.
    public func listExports(_ connection: ConnectionInfo) async throws(NBDError) -> [ExportEntry] {
        try await listExports(connection, from: 0)
    }

    private func listExports(_ connection: ConnectionInfo, from index: Int) async throws(NBDError) -> [ExportEntry] {
        guard index < layers.count else { return try await base.listExports(connection) }
        return try await layers[index].listExports(connection) {
            (below: ConnectionInfo) async throws(NBDError) -> [ExportEntry] in
            try await listExports(below, from: index + 1)
        }
    }

    /// The outermost layer's default export, each layer seeing the answer of the layers below.
    public func defaultExport(_ connection: ConnectionInfo) async throws(NBDError) -> String {
        try await defaultExport(connection, from: 0)
    }

    private func defaultExport(_ connection: ConnectionInfo, from index: Int) async throws(NBDError) -> String {
        guard index < layers.count else { return try await base.defaultExport(connection) }
        return try await layers[index].defaultExport(connection) {
            (below: ConnectionInfo) async throws(NBDError) -> String in
            try await defaultExport(below, from: index + 1)
        }
    }

    /// Gives the control to every layer and to the base.
    public func attach(_ control: ServerControl) {
        for layer in layers { layer.attach(control) }
        base.attach(control)
    }

    public func shutdown() async {
        for layer in layers {
            await layer.shutdown()
        }
        await base.shutdown()
    }
}

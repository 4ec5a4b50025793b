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

    public func shutdown() async {
        for layer in layers {
            await layer.shutdown()
        }
        await base.shutdown()
    }
}

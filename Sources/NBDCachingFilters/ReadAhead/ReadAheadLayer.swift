import NBDCore

/// The readahead filter as a run-time `FilterLayer`:
/// `nbd-serve --filter=readahead --filter=cache file disk.img`. nbdkit's filter has no parameters.
///
/// One `ReadAheadWindow` and one prefetch thread serve every connection, as nbdkit's window and
/// per-connection background threads do.
public final class ReadAheadLayer: FilterLayer, Sendable {
    public var name: String { Self.filterName }
    package let window = ReadAheadWindow()
    package let thread = PrefetchThread()

    /// Creates the layer.
    public init() {}

    deinit {
        thread.stop()
    }

    /// Ends the prefetch thread; every connection has closed, and with it its prefetches.
    public func shutdown() async {
        thread.stop()
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(ReadAheadFilter(wrapping: next, window: window, thread: thread))
    }
}

extension ReadAheadLayer: ConfigurableFilterLayer {
    public static var filterName: String { "readahead" }
    public static var summary: String {
        "prefetch what is read next with cache requests; useful only over a layer that caches (add --filter=cache after it)"
    }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; there are no parameters.
    public convenience init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

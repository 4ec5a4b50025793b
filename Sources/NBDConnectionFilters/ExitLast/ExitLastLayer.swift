import NBDCore
import Synchronization

/// nbdkit's exitlast filter: asks the server to shut down when the last open connection closes, so
/// a server started for one client (or a superserver's) exits after it. Nothing happens before the
/// first connection opens.
///
/// A connection counts from when its stack opens (`NBD_OPT_GO`, or `NBD_OPT_INFO`, which opens and
/// closes it) until it closes, as in nbdkit.
public struct ExitLastLayer: FilterLayer {
    public var name: String { Self.filterName }
    private final class Counter: Sendable {
        let open = Atomic<Int>(0)
    }
    private let counter = Counter()
    private let control = ControlSlot()

    /// Creates the layer.
    public init() {}

    /// Connections open now.
    public var openConnections: Int { counter.open.load(ordering: .acquiring) }

    public func attach(_ control: ServerControl) {
        self.control.attach(control)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        counter.open.wrappingAdd(1, ordering: .acquiringAndReleasing)
        return AnyBlockBackend(
            CloseNotifyingFilter(next: next) { [counter, control] in
                if counter.open.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    control.current.requestShutdown()
                }
            })
    }
}

extension ExitLastLayer: ConfigurableFilterLayer {
    public static var filterName: String { "exitlast" }
    public static var summary: String { "shut the server down when the last client disconnects" }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; it takes no parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

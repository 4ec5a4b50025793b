import NBDCore

/// The FUA filter as a run-time `FilterLayer`, buildable from nbdkit's parameters:
/// `nbd-serve --filter=fua memory 1G fuamode=emulate flush-on-close=true`.
public struct FUALayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The mode every connection uses.
    public let mode: FUAMode
    /// Whether every connection flushes the layer below when it closes.
    public let flushOnClose: Bool

    /// Creates the layer; the defaults are nbdkit's (`fuamode=none`, no flush on close).
    public init(mode: FUAMode = .none, flushOnClose: Bool = false) {
        self.mode = mode
        self.flushOnClose = flushOnClose
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(try FUAFilter(wrapping: next, mode: mode, flushOnClose: flushOnClose, connection: connection))
    }
}

extension FUALayer: ConfigurableFilterLayer {
    public static var filterName: String { "fua" }
    public static var summary: String {
        "change how FUA and flush requests reach the layer below (emulate, force, discard, ...)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "fuamode", "none (FUA not advertised), emulate, native, force, pass or the unsafe discard",
                default: "none"),
            ParameterDescription(
                "flush-on-close", "true to flush the layer below when a client disconnects", default: "false"),
            ParameterDescription("flush_on_close", "alias of flush-on-close"),
        ]
    }

    /// Creates the layer from `fuamode` and `flush-on-close` (or `flush_on_close`). Both are optional;
    /// an explicit `fuamode=none` is accepted (nbdkit rejects it).
    public init(parameters: ParameterValues) throws(NBDError) {
        var mode = FUAMode.none
        if let text = parameters["fuamode"] {
            mode = try FUAMode.parse(text)
        }
        var flushOnClose = false
        if let text = parameters["flush-on-close"] ?? parameters["flush_on_close"] {
            flushOnClose = try parseBoolean(text, for: "flush-on-close")
        }
        self.init(mode: mode, flushOnClose: flushOnClose)
    }
}

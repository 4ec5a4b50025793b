import NBDCore

/// The spinning filter as a run-time `FilterLayer`: `nbd-serve --filter=spinning memory 1G heads=4
/// separate-heads=true`.
public struct SpinningLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// Heads per connection, 1 to 64.
    public let heads: Int
    /// Whether heads move independently.
    public let separate: Bool
    /// The seek times.
    public let curve: SeekCurve

    /// Creates the layer; the defaults are nbdkit's.
    public init(heads: Int = 1, separate: Bool = false, curve: SeekCurve) {
        self.heads = heads
        self.separate = separate
        self.curve = curve
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(SpinningFilter(wrapping: next, heads: heads, separate: separate, curve: curve))
    }
}

extension SpinningLayer: ConfigurableFilterLayer {
    public static var filterName: String { "spinning" }
    public static var summary: String {
        "add the seek delays of a spinning disk (advertised rotational): heads, min/half/max-seek-time"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("heads", "the number of heads, 1 to 64", default: "1"),
            ParameterDescription(
                "separate-heads", "true: heads move independently; false: on one arm, together", default: "false"),
            ParameterDescription("min-seek-time", "track-to-track seek time, such as 10ms", default: "10ms"),
            ParameterDescription("half-seek-time", "seek time across half the disk", default: "200ms"),
            ParameterDescription("max-seek-time", "seek time across the whole disk", default: "500ms"),
        ]
    }

    /// Creates the layer from its parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        let heads: Int = try parameters.integer("heads", in: 1...64) ?? 1
        let curve = try SeekCurve(
            minimum: try parameters.duration("min-seek-time") ?? .milliseconds(10),
            half: try parameters.duration("half-seek-time") ?? .milliseconds(200),
            maximum: try parameters.duration("max-seek-time") ?? .milliseconds(500))
        self.init(heads: heads, separate: try parameters.boolean("separate-heads", default: false), curve: curve)
    }
}

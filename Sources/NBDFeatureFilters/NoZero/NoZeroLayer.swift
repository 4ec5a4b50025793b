import NBDCore

/// The nozero filter as a run-time `FilterLayer`, built from nbdkit's parameters:
/// `nbd-serve --filter=nozero file disk.img zeromode=emulate`.
public struct NoZeroLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// How zero requests are handled.
    public let zeroMode: ZeroMode
    /// How the fast-zero flag is handled.
    public let fastZeroMode: FastZeroMode

    /// Creates the layer; the defaults are nbdkit's (`zeromode=none`, `fastzeromode=default`).
    public init(zeroMode: ZeroMode = .none, fastZeroMode: FastZeroMode = .default) {
        self.zeroMode = zeroMode
        self.fastZeroMode = fastZeroMode
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(
            try NoZeroFilter(wrapping: next, zeroMode: zeroMode, fastZeroMode: fastZeroMode, connection: connection))
    }
}

extension NoZeroLayer: ConfigurableFilterLayer {
    public static var filterName: String { "nozero" }
    public static var summary: String { "disable or degrade write-zeroes and fast zero (zeromode, fastzeromode)" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "zeromode",
                "none (write-zeroes not advertised), emulate (done as writes), notrim (never punch holes) or plugin (unchanged)",
                default: "none"),
            ParameterDescription(
                "fastzeromode",
                "default, none (not advertised), slow (always ENOTSUP) or ignore (unsafe: the flag is dropped)",
                default: "default"),
        ]
    }

    /// Creates the layer from `zeromode` and `fastzeromode`.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init(
            zeroMode: try parameters.choice(
                "zeromode", ["none": .none, "emulate": .emulate, "notrim": .notrim, "plugin": .plugin], default: .none),
            fastZeroMode: try parameters.choice(
                "fastzeromode", ["default": .default, "none": .none, "slow": .slow, "ignore": .ignore],
                default: .default))
    }
}

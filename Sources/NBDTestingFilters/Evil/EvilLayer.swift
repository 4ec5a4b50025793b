#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import NBDCore

/// The evil filter as a run-time `FilterLayer`: `nbd-serve --filter=evil file disk.img
/// evil=cosmic-rays evil-probability=1e-6`.
public struct EvilLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// What every connection shares.
    public let state: EvilState

    /// Creates the layer.
    public init(_ configuration: EvilConfiguration) {
        state = EvilState(configuration)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(EvilFilter(wrapping: next, state: state))
    }
}

extension EvilLayer: ConfigurableFilterLayer {
    public static var filterName: String { "evil" }
    public static var summary: String { "corrupt data as it is read: cosmic rays, stuck bits or stuck wires" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "evil", "cosmic-rays (random flips), stuck-bits (fixed places on the disk) or stuck-wires (fixed places in each read)",
                default: "stuck-bits"),
            ParameterDescription(
                "evil-probability",
                "the chance a bit is flipped or stuck: 1e-6, 1:1000000 or 0.5% (default 1e-8, stuck-wires 1e-6; below 1e-12 none, above 1/8 all)"
            ),
            ParameterDescription(
                "evil-stuck-probability", "for the stuck modes, the chance a read sees a stuck bit stuck", default: "1"),
            ParameterDescription("evil-seed", "a number that makes runs repeatable (default: the time)"),
        ]
    }

    /// Creates the layer from `evil`, `evil-probability`, `evil-stuck-probability` and `evil-seed`.
    public init(parameters: ParameterValues) throws(NBDError) {
        var choices: KeyValuePairs<String, EvilMode> {
            ["cosmic-rays": .cosmicRays, "stuck-bits": .stuckBits, "stuck-wires": .stuckWires]
        }
        let mode = try parameters.choice("evil", choices, default: .stuckBits)
        let probability = try parameters["evil-probability"].map { text throws(NBDError) in
            try EvilConfiguration.parseProbability(text, for: "evil-probability")
        }
        let stuck = try parameters["evil-stuck-probability"].map { text throws(NBDError) in
            try EvilConfiguration.parseProbability(text, for: "evil-stuck-probability")
        }
        let seed: UInt32 = try parameters.integer("evil-seed") ?? UInt32(truncatingIfNeeded: time(nil))
        self.init(EvilConfiguration(mode: mode, probability: probability, stuckProbability: stuck ?? 1, seed: seed))
    }
}

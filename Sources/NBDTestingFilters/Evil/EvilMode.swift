/// How the evil filter corrupts what is read (`evil=`).
public enum EvilMode: String, Sendable, Hashable, CaseIterable {
    /// Bits flip at random on each read.
    case cosmicRays = "cosmic-rays"
    /// Bits at fixed places of the disk read as a fixed value (the default).
    case stuckBits = "stuck-bits"
    /// Bits at fixed places of each request's data read as a fixed value, wherever the request
    /// reads from: a stuck wire on the data path.
    case stuckWires = "stuck-wires"

    /// nbdkit's default probability for the mode: 1e-8 for bits, 1e-6 for wires.
    public var defaultProbability: Double {
        self == .stuckWires ? 1e-6 : 1e-8
    }
}

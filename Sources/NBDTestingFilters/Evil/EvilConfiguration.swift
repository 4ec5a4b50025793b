import NBDCore

/// The evil filter's parameters.
public struct EvilConfiguration: Sendable, Hashable {
    /// The corruption mode.
    public var mode: EvilMode
    /// The probability that a bit is flipped (cosmic rays) or stuck. Below 1e-12 nothing is
    /// corrupted; above 1/8 every bit is, as in nbdkit.
    public var probability: Double
    /// For the stuck modes, the probability that a read of a stuck bit sees the stuck value.
    public var stuckProbability: Double
    /// The seed that places stuck bits (and starts the cosmic-ray sequence).
    public var seed: UInt32

    /// Creates a configuration; `probability` defaults to the mode's.
    public init(mode: EvilMode = .stuckBits, probability: Double? = nil, stuckProbability: Double = 1, seed: UInt32) {
        self.mode = mode
        self.probability = probability ?? mode.defaultProbability
        self.stuckProbability = stuckProbability
        self.seed = seed
    }

    /// Parses nbdkit's probability forms: a number from 0 to 1 (`0.001`, `1e-6`), `N:M` (N in M)
    /// or `N%`.
    public static func parseProbability(_ text: String, for key: String) throws(NBDError) -> Double {
        let invalid = NBDError(
            .invalidArgument, "\(key)=\(text): expected a probability from 0 to 1, such as 1e-6, 1:1000000 or 0.5%")
        var value: Double?
        if text.hasSuffix("%") {
            value = Double(text.dropLast()).map { $0 / 100 }
        } else if let colon = text.firstIndex(of: ":") {
            if let numerator = Double(text[..<colon]), let denominator = Double(text[text.index(after: colon)...]),
                denominator > 0
            {
                value = numerator / denominator
            }
        } else {
            value = Double(text)
        }
        guard let value, value.isFinite, value >= 0, value <= 1 else { throw invalid }
        return value
    }
}

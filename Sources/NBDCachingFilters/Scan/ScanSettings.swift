import NBDCore

/// The scan filter's parameters, with nbdkit's defaults.
public struct ScanSettings: Sendable, Hashable {
    /// Skip forward past a client's read that lies beyond the scan (`scan-ahead`, default true).
    public var ahead: Bool
    /// Resume where the scan stopped when a client connects after all had left (`scan-clock`,
    /// default true); otherwise start again from the beginning.
    public var clock: Bool
    /// Start over after the end (`scan-forever`, default false).
    public var forever: Bool
    /// The size of each prefetch, a power of two (`scan-size`, default 2M).
    public var size: UInt64

    /// Creates settings.
    public init(ahead: Bool = true, clock: Bool = true, forever: Bool = false, size: UInt64 = 2 << 20) {
        self.ahead = ahead
        self.clock = clock
        self.forever = forever
        self.size = size
    }
}

/// A token bucket of bits, nbdkit's rate filter's: it fills at ``rate`` bits per second up to
/// ``capacity`` and starts full, so a client that was idle may burst for ``capacity`` worth of
/// data before it is held to the rate.
public struct TokenBucket: Sendable, Hashable {
    /// Bits per second; 0 means no limit.
    public private(set) var rate: UInt64
    /// How many seconds of ``rate`` the bucket holds (nbdkit's `burstiness`).
    public let burstiness: Double
    /// The most tokens the bucket holds: ``rate`` × ``burstiness``.
    public private(set) var capacity: UInt64
    /// The tokens in the bucket now.
    public private(set) var level: UInt64
    /// When tokens were last added, as time since an arbitrary origin.
    private var lastFill: Duration

    /// Creates a full bucket for `rate` bits per second at time `now`.
    public init(rate: UInt64, burstiness: Double = 2.0, now: Duration) {
        self.rate = rate
        self.burstiness = burstiness
        self.capacity = Self.capacity(rate: rate, burstiness: burstiness)
        self.level = capacity
        self.lastFill = now
    }

    private static func capacity(rate: UInt64, burstiness: Double) -> UInt64 {
        let bits = Double(rate) * burstiness
        return bits >= Double(UInt64.max) ? .max : UInt64(bits)
    }

    /// Changes the rate (nbdkit's rate file), keeping at most the new capacity; returns the old rate.
    @discardableResult
    public mutating func adjust(rate newRate: UInt64) -> UInt64 {
        let old = rate
        rate = newRate
        capacity = Self.capacity(rate: newRate, burstiness: burstiness)
        level = min(level, capacity)
        return old
    }

    /// Adds the tokens earned since the last call, then takes as many of `bits` as the bucket holds.
    ///
    /// - Returns: The bits still owed (0 when all were taken) and how long filling that many takes at
    ///   the rate: the caller waits that long and asks again for the rest.
    public mutating func take(_ bits: UInt64, now: Duration) -> (owed: UInt64, wait: Duration) {
        guard rate > 0 else { return (0, .zero) }
        let elapsed = now - lastFill
        if elapsed > .zero {
            let (seconds, attoseconds) = elapsed.components
            let earned =
                Double(rate) * (Double(seconds) + Double(attoseconds) / 1e18)
            let added = earned >= Double(capacity - level) ? capacity - level : UInt64(earned)
            level += added
            lastFill = now
        }
        if level >= bits {
            level -= bits
            return (0, .zero)
        }
        let owed = bits - level
        level = 0
        let nanoseconds = Double(owed) * 1e9 / Double(rate)
        return (owed, .nanoseconds(Int64(min(nanoseconds, 1e18))))
    }
}

import NBDCore

/// The spinning filter's seek times: a quadratic through (0, `minimum`), (½, `half`) and
/// (1, `maximum`), where x is the distance as a fraction of a head's range. Moves of at most one
/// track (128 KiB) cost nothing.
public struct SeekCurve: Sendable, Hashable {
    /// Track-to-track seek time, in seconds.
    public let minimum: Double
    /// Seek time across half the range, in seconds.
    public let half: Double
    /// Seek time across the whole range, in seconds.
    public let maximum: Double
    let a: Double
    let b: Double

    /// Moves of at most this many bytes are free.
    public static var trackSize: UInt64 { 128 * 1024 }

    /// Fits the curve; nbdkit's defaults are 10 ms, 200 ms and 500 ms.
    public init(
        minimum: Duration = .milliseconds(10), half: Duration = .milliseconds(200),
        maximum: Duration = .milliseconds(500)
    ) throws(NBDError) {
        func seconds(_ duration: Duration) -> Double {
            Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        }
        self.minimum = seconds(minimum)
        self.half = seconds(half)
        self.maximum = seconds(maximum)
        // Through the three points: c = min, a/2 = max - 2 half + min, b = max - min - a.
        a = 2 * (self.maximum - 2 * self.half + self.minimum)
        b = self.maximum - self.minimum - a
        for (x, expected) in [(0.0, self.minimum), (0.5, self.half), (1.0, self.maximum)]
        where abs(seconds(x) - expected) >= 0.0005 || !seconds(x).isFinite {
            throw NBDError(
                .invalidArgument,
                "min-seek-time, half-seek-time and max-seek-time give an unstable seek curve; choose other values")
        }

        func seconds(_ x: Double) -> Double { a * x * x + b * x + self.minimum }
    }

    /// The time to move `distance` bytes across a range of `range` bytes.
    public func seekTime(distance: UInt64, range: UInt64) -> Duration {
        guard distance > Self.trackSize, range > 0 else { return .zero }
        let x = Double(distance) / Double(range)
        let seconds = max(0, a * x * x + b * x + minimum)
        return .nanoseconds(Int64(min(seconds, 1e9) * 1e9))
    }
}

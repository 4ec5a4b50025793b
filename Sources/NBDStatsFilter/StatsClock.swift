#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where the stats filter reads the time: the monotonic clock, or a function a test supplies so that
/// reports come out the same on every run.
///
/// ```swift
/// let ticks = Atomic<UInt64>(0)
/// let clock = StatsClock.manual { ticks.wrappingAdd(1_000, ordering: .relaxed).newValue }
/// let stats = StatsCollector(clock: clock)     // every reading is 1 µs after the previous one
/// ```
public struct StatsClock: Sendable {
    @usableFromInline let custom: (@Sendable () -> UInt64)?

    /// The system's monotonic clock (`CLOCK_MONOTONIC`), which wall-clock changes do not disturb.
    /// nbdkit uses `gettimeofday`, which they do.
    public static var monotonic: StatsClock { StatsClock(custom: nil) }

    /// A clock that returns whatever `now` returns, in nanoseconds. It must not go backwards.
    public static func manual(_ now: @escaping @Sendable () -> UInt64) -> StatsClock {
        StatsClock(custom: now)
    }

    /// The current time in nanoseconds from an arbitrary origin.
    @inlinable
    public func now() -> UInt64 {
        if let custom { return custom() }
        return Self.monotonicNow()
    }

    @usableFromInline
    static func monotonicNow() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }
}

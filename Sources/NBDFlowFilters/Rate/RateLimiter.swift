import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The bandwidth limit of the rate filter: one token bucket for reads and one for writes (nbdkit
/// limits each direction separately), optionally re-read from a rate file. One limiter shared by
/// every connection is nbdkit's `rate`; one per connection is its `connection-rate`.
///
/// ```swift
/// let limiter = RateLimiter(bitsPerSecond: 8 << 20)       // 8 Mbit/s each way
/// try await limiter.pass(bytes: 4096, .read)
/// ```
public final class RateLimiter: Sendable {
    /// A direction of transfer, each with its own bucket.
    public enum Direction: Sendable {
        /// Data sent to the client: reads.
        case read
        /// Data received from the client: writes.
        case write
    }

    private let readBucket: LockedValue<TokenBucket>
    private let writeBucket: LockedValue<TokenBucket>
    /// The file the rate is re-read from, if any.
    public let rateFile: String?
    /// When the rate file was last read (time since the clock's origin), so it is read at most once
    /// a second rather than on every request.
    private let lastFileCheck: LockedValue<Duration?>
    private let now: @Sendable () -> Duration
    private let sleep: @Sendable (Duration) async throws(NBDError) -> Void

    /// Creates a limiter of `bitsPerSecond` each way (0: no limit until a rate file sets one).
    public convenience init(bitsPerSecond: UInt64, burstiness: Double = 2.0, rateFile: String? = nil) {
        self.init(
            bitsPerSecond: bitsPerSecond, burstiness: burstiness, rateFile: rateFile, now: Self.monotonicNow,
            sleep: Self.suspend)
    }

    /// Creates a limiter with the caller's clock and sleep (tests advance a clock instead of waiting).
    package init(
        bitsPerSecond: UInt64, burstiness: Double, rateFile: String?, now: @escaping @Sendable () -> Duration,
        sleep: @escaping @Sendable (Duration) async throws(NBDError) -> Void
    ) {
        let start = now()
        readBucket = LockedValue(TokenBucket(rate: bitsPerSecond, burstiness: burstiness, now: start))
        writeBucket = LockedValue(TokenBucket(rate: bitsPerSecond, burstiness: burstiness, now: start))
        self.rateFile = rateFile
        self.lastFileCheck = LockedValue(nil)
        self.now = now
        self.sleep = sleep
    }

    /// The current rate in bits per second (the read and write buckets always share it).
    public var bitsPerSecond: UInt64 { readBucket.withLock { $0.rate } }

    /// Waits until `bytes` may pass in `direction`: takes `bytes × 8` tokens, waiting (suspended,
    /// never blocking a thread) for the bucket to refill whenever it runs dry.
    public func pass(bytes: Int, _ direction: Direction) async throws(NBDError) {
        if rateFile != nil { adjustFromFileIfDue() }
        var bits = UInt64(bytes) * 8
        while bits > 0 {
            let time = now()
            let (owed, wait) =
                switch direction {
                case .read: readBucket.withLock { $0.take(bits, now: time) }
                case .write: writeBucket.withLock { $0.take(bits, now: time) }
                }
            bits = owed
            if owed > 0 { try await sleep(wait) }
        }
    }

    /// Reads the rate file when a second has passed since the last look. A missing or unreadable
    /// file, or one that is not a size, leaves the rate as it is (as in nbdkit).
    func adjustFromFileIfDue() {
        guard let rateFile else { return }
        let time = now()
        let due = lastFileCheck.withLock { last -> Bool in
            if let previous = last, time - previous < .seconds(1) { return false }
            last = time
            return true
        }
        guard due, let text = Self.firstLine(of: rateFile), let rate = try? parseSize(text, for: "rate-file") else {
            return
        }
        readBucket.withLock { _ = $0.adjust(rate: rate) }
        writeBucket.withLock { _ = $0.adjust(rate: rate) }
    }

    /// The first line of the file at `path` (at most 256 bytes), or `nil` when it cannot be read.
    static func firstLine(of path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 256)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let line = bytes[..<count].prefix { $0 != UInt8(ascii: "\n") }
        return String(decoding: line, as: UTF8.self).trimmingCharacters(in: " \t\r")
    }

    @Sendable
    static func monotonicNow() -> Duration {
        ContinuousClock.now - ContinuousClock.Instant.zeroReference
    }

    @Sendable
    static func suspend(_ duration: Duration) async throws(NBDError) {
        do {
            try await Task.sleep(for: duration)
        } catch {
            throw NBDError(.shutdown, "the rate filter's wait was interrupted: the server is stopping")
        }
    }
}

extension ContinuousClock.Instant {
    /// A fixed instant every limiter measures from.
    fileprivate static let zeroReference = ContinuousClock.now
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        return String(drop { characters.contains($0) }.reversed().drop { characters.contains($0) }.reversed())
    }
}

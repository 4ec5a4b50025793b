import Synchronization

/// The bytes an export has read, written, zeroed and trimmed, summed over every connection: what
/// nbdkit's count filter reports when it is unloaded.
public final class ByteCounts: Sendable {
    let readBytes = Atomic<UInt64>(0)
    let writtenBytes = Atomic<UInt64>(0)
    let zeroedBytes = Atomic<UInt64>(0)
    let trimmedBytes = Atomic<UInt64>(0)

    /// All counts at zero.
    public init() {}

    /// Bytes read so far.
    public var read: UInt64 { readBytes.load(ordering: .relaxed) }
    /// Bytes written so far.
    public var written: UInt64 { writtenBytes.load(ordering: .relaxed) }
    /// Bytes zeroed so far.
    public var zeroed: UInt64 { zeroedBytes.load(ordering: .relaxed) }
    /// Bytes trimmed so far.
    public var trimmed: UInt64 { trimmedBytes.load(ordering: .relaxed) }

    /// The report line, in nbdkit's words: `count bytes: read 4096, written 0, zeroed 0, trimmed 0`.
    public var report: String {
        "count bytes: read \(read), written \(written), zeroed \(zeroed), trimmed \(trimmed)"
    }
}

/// The operations the stats filter counts, in the order nbdkit's report lists them.
public enum StatsOperation: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `NBD_CMD_READ`.
    case read
    /// `NBD_CMD_WRITE`.
    case write
    /// `NBD_CMD_TRIM`.
    case trim
    /// `NBD_CMD_WRITE_ZEROES`.
    case zero
    /// `NBD_CMD_BLOCK_STATUS` (nbdkit's `extents`).
    case extents
    /// `NBD_CMD_CACHE`.
    case cache
    /// `NBD_CMD_FLUSH`.
    case flush

    /// The name used in the text report and the JSON (`read`, `write`, ...), as nbdkit names them.
    public var description: String { rawValue }

    /// The position in `allCases`, which is also the index into per-operation storage.
    @inlinable
    var index: Int {
        switch self {
        case .read: 0
        case .write: 1
        case .trim: 2
        case .zero: 3
        case .extents: 4
        case .cache: 5
        case .flush: 6
        }
    }

    /// Whether nbdkit adds this operation to the `total:` line's operation count (cache is left out).
    public var countsTowardTotalOperations: Bool { self != .cache }

    /// Whether nbdkit adds this operation's bytes to the `total:` line (extents, cache and flush are
    /// left out: they move no data).
    public var countsTowardTotalBytes: Bool {
        switch self {
        case .read, .write, .trim, .zero: true
        case .extents, .cache, .flush: false
        }
    }
}

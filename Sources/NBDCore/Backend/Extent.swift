/// One run of blocks with the same allocation status, as reported by `NBD_CMD_BLOCK_STATUS` for the
/// `base:allocation` context.
public struct Extent: Sendable, Hashable {
    /// The allocation status of an extent.
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `NBD_STATE_HOLE`: the blocks are not allocated.
        public static let hole = Flags(rawValue: 1 << 0)
        /// `NBD_STATE_ZERO`: the blocks read as zeroes.
        public static let zero = Flags(rawValue: 1 << 1)
    }

    /// The number of bytes in this run.
    public var length: UInt64
    /// Whether the run is a hole and whether it reads as zero.
    public var flags: Flags

    /// Creates an extent of `length` bytes.
    public init(length: UInt64, flags: Flags) {
        self.length = length
        self.flags = flags
    }

    /// Allocated data.
    public static func data(_ length: UInt64) -> Extent { Extent(length: length, flags: []) }
    /// An unallocated run that reads as zeroes.
    public static func hole(_ length: UInt64) -> Extent { Extent(length: length, flags: [.hole, .zero]) }
}

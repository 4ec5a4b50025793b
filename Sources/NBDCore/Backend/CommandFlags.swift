/// The NBD command flags a request carries, with their wire bit values.
///
/// Each operation receives the flags that apply to it: ``fua`` on writes, zeroes and trims;
/// ``noHole`` and ``fastZero`` on zeroes; ``requestOne`` on extents; ``dontFragment`` on reads.
public struct CommandFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// `NBD_CMD_FLAG_FUA`: the reply must wait until the data is on stable storage.
    public static let fua = CommandFlags(rawValue: 1 << 0)
    /// `NBD_CMD_FLAG_NO_HOLE`: a zero request must allocate; it may not punch a hole.
    public static let noHole = CommandFlags(rawValue: 1 << 1)
    /// `NBD_CMD_FLAG_DF`: a structured read reply must come in one chunk.
    public static let dontFragment = CommandFlags(rawValue: 1 << 2)
    /// `NBD_CMD_FLAG_REQ_ONE`: block status should describe just one extent.
    public static let requestOne = CommandFlags(rawValue: 1 << 3)
    /// `NBD_CMD_FLAG_FAST_ZERO`: fail a zero request with `ENOTSUP` rather than do it slowly.
    public static let fastZero = CommandFlags(rawValue: 1 << 4)

    /// Every flag this library understands; others are rejected with `EINVAL`.
    public static let known: CommandFlags = [.fua, .noHole, .dontFragment, .requestOne, .fastZero]
}

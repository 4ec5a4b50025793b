/// The block size constraints a layer advertises with `NBD_INFO_BLOCK_SIZE`.
public struct BlockSizeConstraints: Sendable, Hashable {
    /// The smallest block that can be addressed; requests must be aligned to it. A power of two, ≤ 64 KiB.
    public var minimum: UInt32
    /// The block size that avoids read-modify-write. A power of two, ≥ max(minimum, 512).
    public var preferred: UInt32
    /// The largest payload of a read or write, ≥ preferred.
    public var maximumPayload: UInt32

    /// Creates constraints. The defaults are the NBD protocol's when a server advertises none,
    /// with a 32 MiB payload limit.
    public init(minimum: UInt32 = 1, preferred: UInt32 = 4096, maximumPayload: UInt32 = 32 << 20) {
        self.minimum = minimum
        self.preferred = preferred
        self.maximumPayload = maximumPayload
    }

    /// The protocol's defaults: minimum 1, preferred 4096, maximum payload 32 MiB.
    public static let `default` = BlockSizeConstraints()

    /// Whether the values obey the protocol's rules (powers of two, ordering, limits).
    public var isValid: Bool {
        minimum > 0 && minimum & (minimum - 1) == 0 && minimum <= 65536
            && preferred & (preferred - 1) == 0 && preferred >= max(minimum, 512)
            && maximumPayload >= preferred
    }
}

/// The block size constraints a layer advertises with `NBD_INFO_BLOCK_SIZE`.
public struct BlockSizeConstraints: Sendable, Hashable {
    /// The smallest block that can be addressed; requests must be aligned to it. A power of two, ≤ 64 KiB.
    public var minimum: UInt32
    /// The block size that avoids read-modify-write. A power of two, ≥ max(minimum, 512).
    public var preferred: UInt32
    /// The largest payload of a read or write, ≥ preferred.
    public var maximumPayload: UInt32
    /// Whether the server rejects, with `EINVAL`, requests whose offset or length is not a multiple
    /// of ``minimum`` before they enter the stack. `true` by default.
    ///
    /// `false` advertises the minimum as a hint only and lets such requests through to the filters,
    /// as nbdkit's server does: the blocksize-policy filter's `allow` policy, and its own checks for
    /// `error`, rely on it. The largest payload accepted is ``enforcedMaximumPayload``.
    public var isEnforced: Bool
    /// The largest read or write payload the server accepts when it is larger than the advertised
    /// ``maximumPayload``, or `nil` (the default) to accept no more than is advertised.
    ///
    /// The blocksize-policy filter advertises its maximum as a hint, as nbdkit's server does: under
    /// the `allow` policy a client that ignores it is served up to what the layer below accepts
    /// (and the server's own payload limit). A filter that lowers ``maximumPayload`` because it
    /// cannot take more must set this to `nil`.
    public var enforcedMaximumPayload: UInt32?

    /// The largest payload the server accepts: ``enforcedMaximumPayload`` when set, otherwise
    /// ``maximumPayload``.
    public var acceptedMaximumPayload: UInt32 { enforcedMaximumPayload ?? maximumPayload }
    /// A write request longer than this makes the server close the connection at once, without
    /// reading its payload or replying, as qemu-nbd does above 32 MiB (blocksize-policy's
    /// `blocksize-write-disconnect`). `nil`, the default, keeps the connection and answers `EINVAL`.
    public var writeDisconnectLimit: UInt32?

    /// Creates constraints. The defaults are the NBD protocol's when a server advertises none,
    /// with a 32 MiB payload limit.
    public init(
        minimum: UInt32 = 1, preferred: UInt32 = 4096, maximumPayload: UInt32 = 32 << 20, isEnforced: Bool = true
    ) {
        self.minimum = minimum
        self.preferred = preferred
        self.maximumPayload = maximumPayload
        self.isEnforced = isEnforced
        self.enforcedMaximumPayload = nil
        self.writeDisconnectLimit = nil
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

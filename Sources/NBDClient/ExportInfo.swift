import NBDCore

/// What the server said about an export during the handshake: its size, its transmission flags,
/// its block size constraints, and what this connection negotiated.
public struct ExportInfo: Sendable, Hashable {
    /// The export name asked for.
    public var name: String
    /// The export size in bytes.
    public var size: UInt64
    /// The raw transmission flags (`NBD_FLAG_*`).
    public var transmissionFlags: UInt16
    /// The block size constraints the server sent with `NBD_INFO_BLOCK_SIZE`, or `nil` when it sent
    /// none (then the protocol's defaults apply: 1, 4096, 32 MiB).
    public var blockSize: BlockSizeConstraints?
    /// Whether structured replies are in use (always, when ``extendedHeaders`` are).
    public var structuredReplies: Bool
    /// Whether extended headers (`NBD_OPT_EXTENDED_HEADERS`) are in use: requests and replies have
    /// 32-byte headers with 64-bit lengths, so a zero, trim, cache or block status request of any
    /// length is sent as one request instead of pieces of less than 4 GiB.
    public var extendedHeaders: Bool = false
    /// The context id of `base:allocation`, when the server agreed to report it.
    public var allocationContextID: UInt32?
    /// Whether the connection runs over TLS (`NBD_OPT_STARTTLS` was accepted).
    public var usesTLS: Bool = false

    /// Creates export facts (for tests and tools).
    public init(
        name: String, size: UInt64, transmissionFlags: UInt16, blockSize: BlockSizeConstraints? = nil,
        structuredReplies: Bool = false, allocationContextID: UInt32? = nil
    ) {
        self.name = name
        self.size = size
        self.transmissionFlags = transmissionFlags
        self.blockSize = blockSize
        self.structuredReplies = structuredReplies
        self.allocationContextID = allocationContextID
    }

    private func has(_ bit: Int) -> Bool { transmissionFlags & 1 != 0 && transmissionFlags & (1 << bit) != 0 }

    /// `NBD_FLAG_READ_ONLY`.
    public var isReadOnly: Bool { has(1) }
    /// `NBD_FLAG_SEND_FLUSH`.
    public var canFlush: Bool { has(2) }
    /// `NBD_FLAG_SEND_FUA`.
    public var canFUA: Bool { has(3) }
    /// `NBD_FLAG_ROTATIONAL`.
    public var isRotational: Bool { has(4) }
    /// `NBD_FLAG_SEND_TRIM`.
    public var canTrim: Bool { has(5) }
    /// `NBD_FLAG_SEND_WRITE_ZEROES`.
    public var canZero: Bool { has(6) }
    /// `NBD_FLAG_SEND_DF`.
    public var canDontFragment: Bool { has(7) }
    /// `NBD_FLAG_CAN_MULTI_CONN`: flushes are visible across every connection to this export.
    public var canMultiConn: Bool { has(8) }
    /// `NBD_FLAG_SEND_CACHE`.
    public var canCache: Bool { has(10) }
    /// `NBD_FLAG_SEND_FAST_ZERO`.
    public var canFastZero: Bool { has(11) }
    /// Whether block status (`base:allocation`) can be asked for.
    public var canBlockStatus: Bool { allocationContextID != nil }

    /// The largest read or write payload the server accepts: its advertised maximum, or the
    /// protocol's 32 MiB when it advertised none.
    public var maximumPayload: Int {
        Int(blockSize?.maximumPayload ?? (32 << 20))
    }

    /// The export as NBDCore's capabilities, for a backend that passes it on (the `nbd` backend).
    /// Block sizes the server did not send, or that NBDCore would not accept, fall back to values
    /// that keep every request valid upstream. No operation is declared slow; the caller decides.
    public var capabilities: Capabilities {
        var constraints = BlockSizeConstraints.default
        if let blockSize {
            let minimum =
                blockSize.minimum > 0 && blockSize.minimum & (blockSize.minimum - 1) == 0
                ? min(blockSize.minimum, 65536) : 1
            var preferred = max(blockSize.preferred, minimum, 512)
            if preferred & (preferred - 1) != 0 { preferred = 4096 }
            let maximum = max(min(blockSize.maximumPayload, 32 << 20), preferred)
            constraints = BlockSizeConstraints(minimum: minimum, preferred: preferred, maximumPayload: maximum)
        }
        return Capabilities(
            size: size, isWritable: !isReadOnly, canFlush: canFlush, fua: canFUA ? .native : .none,
            canTrim: canTrim, canZero: canZero, canFastZero: canZero && canFastZero,
            cache: canCache ? .native : .none, canExtents: canBlockStatus, canMultiConn: canMultiConn,
            isRotational: isRotational, blockSize: constraints, slowOperations: [])
    }
}

/// One export a server listed in reply to `NBD_OPT_LIST`.
public struct ExportListing: Sendable, Hashable {
    /// The export name.
    public var name: String
    /// The description the server gave, often empty.
    public var description: String

    /// Creates a listing.
    public init(name: String, description: String = "") {
        self.name = name
        self.description = description
    }
}

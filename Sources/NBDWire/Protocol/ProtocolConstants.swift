import NBDCore

/// Magic numbers, sizes and limits of the NBD protocol (doc/proto.md of NetworkBlockDevice/nbd), for
/// both the server and the client.
package enum ProtocolConstants {
    package static let nbdMagic: UInt64 = 0x4e42_444d_4147_4943  // "NBDMAGIC"
    package static let optionMagic: UInt64 = 0x4948_4156_454F_5054  // "IHAVEOPT"
    /// The old-style handshake's second magic, which this package's client refuses and server never sends.
    package static let oldstyleMagic: UInt64 = 0x0000_4202_8186_1253
    package static let optionReplyMagic: UInt64 = 0x3_e889_0455_65a9
    package static let requestMagic: UInt32 = 0x2560_9513
    package static let simpleReplyMagic: UInt32 = 0x6744_6698
    package static let structuredReplyMagic: UInt32 = 0x668e_33ef
    /// The request magic once extended headers are negotiated (`NBD_EXTENDED_REQUEST_MAGIC`).
    package static let extendedRequestMagic: UInt32 = 0x21e4_1c71
    /// The reply magic once extended headers are negotiated (`NBD_EXTENDED_REPLY_MAGIC`): every
    /// reply, simple or chunked, has this 32-byte header.
    package static let extendedReplyMagic: UInt32 = 0x6e8a_278c

    /// Handshake flags the server sends.
    package static let flagFixedNewstyle: UInt16 = 1 << 0
    package static let flagNoZeroes: UInt16 = 1 << 1

    /// Client flags.
    package static let clientFixedNewstyle: UInt32 = 1 << 0
    package static let clientNoZeroes: UInt32 = 1 << 1

    /// Request header size in bytes (magic, flags, type, cookie, offset, length).
    package static let requestHeaderSize = 28
    package static let simpleReplyHeaderSize = 16
    package static let structuredReplyHeaderSize = 20
    /// Extended request header size (magic, flags, type, cookie, offset, 64-bit length).
    package static let extendedRequestHeaderSize = 32
    /// Extended reply header size (magic, flags, type, cookie, offset, 64-bit length).
    package static let extendedReplyHeaderSize = 32

    /// `NBD_CMD_FLAG_PAYLOAD_LEN`: with extended headers, the header's length is the size of the
    /// payload that follows (a write's, always; a block-status request's list of context ids). A
    /// wire-level flag: the server strips it before the request reaches a filter.
    package static let commandFlagPayloadLength: UInt16 = 1 << 5

    /// The longest error message the protocol allows in a structured error chunk.
    package static let maximumErrorMessage = 4096
    /// The longest option reply the client accepts (export lists, info replies, error text).
    package static let maximumOptionReply = 64 << 10
}

/// Transmission flags (`NBD_FLAG_*`), sent as a 16-bit field.
package struct TransmissionFlags: OptionSet, Sendable, Hashable {
    package let rawValue: UInt16

    package static let hasFlags = TransmissionFlags(rawValue: 1 << 0)
    package static let readOnly = TransmissionFlags(rawValue: 1 << 1)
    package static let sendFlush = TransmissionFlags(rawValue: 1 << 2)
    package static let sendFUA = TransmissionFlags(rawValue: 1 << 3)
    package static let rotational = TransmissionFlags(rawValue: 1 << 4)
    package static let sendTrim = TransmissionFlags(rawValue: 1 << 5)
    package static let sendWriteZeroes = TransmissionFlags(rawValue: 1 << 6)
    package static let sendDF = TransmissionFlags(rawValue: 1 << 7)
    package static let canMultiConn = TransmissionFlags(rawValue: 1 << 8)
    package static let sendCache = TransmissionFlags(rawValue: 1 << 10)
    package static let sendFastZero = TransmissionFlags(rawValue: 1 << 11)
    /// `NBD_FLAG_BLOCK_STATUS_PAYLOAD`: block status may name the contexts it wants in a payload
    /// (extended headers only).
    package static let blockStatusPayload = TransmissionFlags(rawValue: 1 << 12)

    /// The flags for a connection, derived only from the outermost layer's capabilities, as nbdkit
    /// computes its eflags.
    ///
    /// - `SEND_DF` only when structured replies were negotiated (the flag is meaningless otherwise).
    /// - `CAN_MULTI_CONN` only when the stack says so *and* the server accepts more than one
    ///   connection (with one, a client gains nothing, as in nbdkit and qemu-nbd).
    /// - `SEND_FAST_ZERO` only together with `SEND_WRITE_ZEROES`, as the protocol requires.
    package init(capabilities caps: Capabilities, structuredReplies: Bool, acceptsMultipleConnections: Bool) {
        var flags: TransmissionFlags = .hasFlags
        if !caps.isWritable { flags.insert(.readOnly) }
        if caps.canFlush { flags.insert(.sendFlush) }
        if caps.fua != .none { flags.insert(.sendFUA) }
        if caps.isRotational { flags.insert(.rotational) }
        if caps.isWritable && caps.canTrim { flags.insert(.sendTrim) }
        if caps.isWritable && caps.canZero {
            flags.insert(.sendWriteZeroes)
            if caps.canFastZero { flags.insert(.sendFastZero) }
        }
        if structuredReplies { flags.insert(.sendDF) }
        if caps.canMultiConn && acceptsMultipleConnections { flags.insert(.canMultiConn) }
        if caps.cache != .none { flags.insert(.sendCache) }
        self = flags
    }

    package init(rawValue: UInt16) { self.rawValue = rawValue }
}

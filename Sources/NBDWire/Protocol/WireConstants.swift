// The NBD protocol's numbers that both ends of a connection use: NBDServer answers with them and
// NBDClient asks with them, so they are defined once, here, for this package only.

/// Option codes (`NBD_OPT_*`).
package enum OptionCode {
    package static let exportName: UInt32 = 1
    package static let abort: UInt32 = 2
    package static let list: UInt32 = 3
    package static let startTLS: UInt32 = 5
    package static let info: UInt32 = 6
    package static let go: UInt32 = 7
    package static let structuredReply: UInt32 = 8
    package static let listMetaContext: UInt32 = 9
    package static let setMetaContext: UInt32 = 10
    /// `NBD_OPT_EXTENDED_HEADERS`: 32-byte request and reply headers with 64-bit lengths.
    package static let extendedHeaders: UInt32 = 11
}

/// Option reply types (`NBD_REP_*`).
package enum OptionReply {
    package static let ack: UInt32 = 1
    package static let server: UInt32 = 2
    package static let info: UInt32 = 3
    package static let metaContext: UInt32 = 4

    package static let errorBit: UInt32 = 1 << 31
    package static let errUnsupported: UInt32 = errorBit | 1
    package static let errPolicy: UInt32 = errorBit | 2
    package static let errInvalid: UInt32 = errorBit | 3
    package static let errPlatform: UInt32 = errorBit | 4
    package static let errTLSRequired: UInt32 = errorBit | 5
    package static let errUnknown: UInt32 = errorBit | 6
    package static let errShutdown: UInt32 = errorBit | 7
    package static let errBlockSizeRequired: UInt32 = errorBit | 8
    package static let errTooBig: UInt32 = errorBit | 9
    /// `NBD_REP_ERR_EXT_HEADER_REQD`: the server serves only clients that negotiated extended headers.
    package static let errExtendedHeaderRequired: UInt32 = errorBit | 10

    /// A name for an error reply, for messages.
    package static func name(_ type: UInt32) -> String {
        switch type {
        case errUnsupported: "NBD_REP_ERR_UNSUP"
        case errPolicy: "NBD_REP_ERR_POLICY"
        case errInvalid: "NBD_REP_ERR_INVALID"
        case errPlatform: "NBD_REP_ERR_PLATFORM"
        case errTLSRequired: "NBD_REP_ERR_TLS_REQD"
        case errUnknown: "NBD_REP_ERR_UNKNOWN"
        case errShutdown: "NBD_REP_ERR_SHUTDOWN"
        case errBlockSizeRequired: "NBD_REP_ERR_BLOCK_SIZE_REQD"
        case errTooBig: "NBD_REP_ERR_TOO_BIG"
        case errExtendedHeaderRequired: "NBD_REP_ERR_EXT_HEADER_REQD"
        default: "option reply \(type)"
        }
    }
}

/// Information types of `NBD_OPT_INFO` / `NBD_OPT_GO` (`NBD_INFO_*`).
package enum InfoType {
    package static let export: UInt16 = 0
    package static let name: UInt16 = 1
    package static let description: UInt16 = 2
    package static let blockSize: UInt16 = 3
}

/// Structured reply chunk types and flags (`NBD_REPLY_TYPE_*`, `NBD_REPLY_FLAG_DONE`).
package enum ChunkType {
    package static let none: UInt16 = 0
    package static let offsetData: UInt16 = 1
    package static let offsetHole: UInt16 = 2
    package static let blockStatus: UInt16 = 5
    /// `NBD_REPLY_TYPE_BLOCK_STATUS_EXT`: 64-bit extents, only with extended headers.
    package static let blockStatusExtended: UInt16 = 6
    package static let errorBit: UInt16 = 1 << 15
    package static let error: UInt16 = errorBit | 1
    package static let errorOffset: UInt16 = errorBit | 2

    package static let flagDone: UInt16 = 1 << 0
}

import NBDCore

/// Magic numbers and codes of the NBD protocol (doc/proto.md of NetworkBlockDevice/nbd), as a client
/// uses them. NBDServer keeps its own copy: the client must not depend on the server module.
enum WireProtocol {
    static let nbdMagic: UInt64 = 0x4e42_444d_4147_4943  // "NBDMAGIC"
    static let optionMagic: UInt64 = 0x4948_4156_454F_5054  // "IHAVEOPT"
    static let oldstyleMagic: UInt64 = 0x0000_4202_8186_1253
    static let optionReplyMagic: UInt64 = 0x3_e889_0455_65a9
    static let requestMagic: UInt32 = 0x2560_9513
    static let simpleReplyMagic: UInt32 = 0x6744_6698
    static let structuredReplyMagic: UInt32 = 0x668e_33ef

    static let serverFixedNewstyle: UInt16 = 1 << 0
    static let serverNoZeroes: UInt16 = 1 << 1
    static let clientFixedNewstyle: UInt32 = 1 << 0
    static let clientNoZeroes: UInt32 = 1 << 1

    static let requestHeaderSize = 28
    static let simpleReplyHeaderSize = 16
    static let chunkHeaderSize = 20

    /// The longest error message the protocol allows in a structured error chunk.
    static let maximumErrorMessage = 4096
    /// The longest option reply this client accepts (export lists, info replies, error text).
    static let maximumOptionReply = 64 << 10
}

/// Option codes (`NBD_OPT_*`).
enum OptionCode {
    static let exportName: UInt32 = 1
    static let abort: UInt32 = 2
    static let list: UInt32 = 3
    static let startTLS: UInt32 = 5
    static let info: UInt32 = 6
    static let go: UInt32 = 7
    static let structuredReply: UInt32 = 8
    static let setMetaContext: UInt32 = 10
}

/// Option reply types (`NBD_REP_*`).
enum OptionReplyType {
    static let ack: UInt32 = 1
    static let server: UInt32 = 2
    static let info: UInt32 = 3
    static let metaContext: UInt32 = 4
    static let errorBit: UInt32 = 1 << 31
    static let errUnsupported: UInt32 = errorBit | 1
    static let errPolicy: UInt32 = errorBit | 2
    static let errInvalid: UInt32 = errorBit | 3
    static let errPlatform: UInt32 = errorBit | 4
    static let errTLSRequired: UInt32 = errorBit | 5
    static let errUnknown: UInt32 = errorBit | 6
    static let errShutdown: UInt32 = errorBit | 7
    static let errBlockSizeRequired: UInt32 = errorBit | 8
    static let errTooBig: UInt32 = errorBit | 9

    /// A name for an error reply, for messages.
    static func name(_ type: UInt32) -> String {
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
        default: "option reply \(type)"
        }
    }
}

/// Information types of `NBD_OPT_INFO` / `NBD_OPT_GO` (`NBD_INFO_*`).
enum InfoType {
    static let export: UInt16 = 0
    static let blockSize: UInt16 = 3
}

/// Structured reply chunk types and flags (`NBD_REPLY_TYPE_*`, `NBD_REPLY_FLAG_DONE`).
enum ChunkType {
    static let none: UInt16 = 0
    static let offsetData: UInt16 = 1
    static let offsetHole: UInt16 = 2
    static let blockStatus: UInt16 = 5
    static let errorBit: UInt16 = 1 << 15
    static let error: UInt16 = errorBit | 1
    static let errorOffset: UInt16 = errorBit | 2
    static let flagDone: UInt16 = 1 << 0
}

/// Command types (`NBD_CMD_*`).
package enum CommandType: UInt16, Sendable, CustomStringConvertible {
    case read = 0
    case write = 1
    case disconnect = 2
    case flush = 3
    case trim = 4
    case cache = 5
    case writeZeroes = 6
    case blockStatus = 7

    package var description: String {
        switch self {
        case .read: "read"
        case .write: "write"
        case .disconnect: "disconnect"
        case .flush: "flush"
        case .trim: "trim"
        case .cache: "cache"
        case .writeZeroes: "write zeroes"
        case .blockStatus: "block status"
        }
    }
}

extension NBDError.Code {
    /// The code for an errno a server sent on the wire. The protocol allows eight values; a client
    /// must read any other as `EINVAL`, which is what this returns for them.
    package init(wireErrno value: UInt32) {
        switch value {
        case 1: self = .notPermitted
        case 5: self = .ioError
        case 12: self = .outOfMemory
        case 28: self = .noSpace
        case 75: self = .overflow
        case 95: self = .notSupported
        case 108: self = .shutdown
        default: self = .invalidArgument
        }
    }
}

/// Big-endian loads from unaligned bytes.
extension UnsafeRawBufferPointer {
    @inline(__always) func uint16(at offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inline(__always) func uint32(at offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inline(__always) func uint64(at offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

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

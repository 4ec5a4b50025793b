#if canImport(Glibc)
import Glibc
#endif

/// An error that a backend or filter reports for one request, carrying the NBD wire error the client
/// will see and a message a person can act on.
///
/// Codes are an extensible struct rather than an enum so that new codes can be added without breaking
/// code that switches over them. Every code maps to one of the eight errors the NBD protocol allows on
/// the wire (see ``Code/wireValue``).
///
/// ```swift
/// throw NBDError(.noSpace, "write of 4096 bytes at offset 1048576 ends past the export size 1048576")
/// ```
public struct NBDError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as one of the NBD protocol's error classes.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The errno value sent on the wire for this code.
        public let wireValue: UInt32
        /// A short symbolic name, such as `EINVAL`.
        public let name: String

        /// Creates a code that is sent on the wire as `wireValue`.
        ///
        /// Only the eight values of the NBD protocol are meaningful to clients; others are read as EINVAL.
        public init(wireValue: UInt32, name: String) {
            self.wireValue = wireValue
            self.name = name
        }

        /// `EPERM` (1): the operation is not permitted, for example a write to a read-only export.
        public static let notPermitted = Code(wireValue: 1, name: "EPERM")
        /// `EIO` (5): the storage failed.
        public static let ioError = Code(wireValue: 5, name: "EIO")
        /// `ENOMEM` (12): out of memory. The protocol asks servers to avoid it where another code fits.
        public static let outOfMemory = Code(wireValue: 12, name: "ENOMEM")
        /// `EINVAL` (22): the request is invalid: out of range, misaligned, or unknown.
        public static let invalidArgument = Code(wireValue: 22, name: "EINVAL")
        /// `ENOSPC` (28): a write ends past the export or the storage is full.
        public static let noSpace = Code(wireValue: 28, name: "ENOSPC")
        /// `EOVERFLOW` (75): a read with the DF flag cannot be answered in one chunk.
        public static let overflow = Code(wireValue: 75, name: "EOVERFLOW")
        /// `ENOTSUP` (95): a fast zero cannot be done fast.
        public static let notSupported = Code(wireValue: 95, name: "ENOTSUP")
        /// `ESHUTDOWN` (108): the server is shutting down; the client should disconnect.
        public static let shutdown = Code(wireValue: 108, name: "ESHUTDOWN")

        public var description: String { name }

        /// The value to send for a request that carried `flags`.
        ///
        /// The NBD protocol allows `ENOTSUP` only in reply to a request with `FAST_ZERO`, and `EOVERFLOW`
        /// only in reply to a read with `DF`; everywhere else both become `EINVAL`, as nbdkit does.
        /// Codes outside the eight wire values also become `EINVAL`, which is how clients read them.
        public func wireValue(for flags: CommandFlags) -> UInt32 {
            switch wireValue {
            case Code.notSupported.wireValue:
                return flags.contains(.fastZero) ? wireValue : Code.invalidArgument.wireValue
            case Code.overflow.wireValue:
                return flags.contains(.dontFragment) ? wireValue : Code.invalidArgument.wireValue
            case 1, 5, 12, 22, 28, 108:
                return wireValue
            default:
                return Code.invalidArgument.wireValue
            }
        }
    }

    /// The error class, which decides the wire value.
    public var code: Code
    /// What happened, in words a user can act on.
    public var message: String

    /// Creates an error with a code and a message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Creates an error from a POSIX `errno`, mapped the way the NBD protocol recommends.
    ///
    /// `EROFS` and `EPERM` become `EPERM`; `EDQUOT`, `EFBIG` and `ENOSPC` become `ENOSPC`; `EIO`,
    /// `ENOMEM`, `ESHUTDOWN`, `EOVERFLOW` keep their meaning; `ENOTSUP`/`EOPNOTSUPP` become
    /// ``Code/notSupported``; anything else is `EINVAL`.
    public init(errno value: Int32, _ message: String) {
        let code: Code
        switch value {
        case EPERM, EROFS: code = .notPermitted
        case EIO: code = .ioError
        case ENOMEM: code = .outOfMemory
        case ENOSPC, EDQUOT, EFBIG: code = .noSpace
        case ESHUTDOWN: code = .shutdown
        case EOVERFLOW: code = .overflow
        case ENOTSUP, EOPNOTSUPP: code = .notSupported
        default: code = .invalidArgument
        }
        let reason = String(cString: strerror(value))
        self.init(code, message.isEmpty ? reason : "\(message): \(reason)")
    }

    public var description: String { "\(code.name): \(message)" }
}

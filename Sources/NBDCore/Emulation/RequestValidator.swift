/// The NBD commands that reach a backend.
public enum Command: UInt16, Sendable, Hashable, CustomStringConvertible {
    /// `NBD_CMD_READ`.
    case read = 0
    /// `NBD_CMD_WRITE`.
    case write = 1
    /// `NBD_CMD_DISC`.
    case disconnect = 2
    /// `NBD_CMD_FLUSH`.
    case flush = 3
    /// `NBD_CMD_TRIM`.
    case trim = 4
    /// `NBD_CMD_CACHE`.
    case cache = 5
    /// `NBD_CMD_WRITE_ZEROES`.
    case writeZeroes = 6
    /// `NBD_CMD_BLOCK_STATUS`.
    case blockStatus = 7

    public var description: String {
        switch self {
        case .read: "read"
        case .write: "write"
        case .disconnect: "disconnect"
        case .flush: "flush"
        case .trim: "trim"
        case .cache: "cache"
        case .writeZeroes: "zero"
        case .blockStatus: "block status"
        }
    }
}

/// Checks one request against a connection's capabilities before it enters the stack, with the
/// error the NBD protocol prescribes for each fault:
///
/// | fault | error |
/// |---|---|
/// | write, zero or trim on a read-only export | `EPERM` |
/// | write or zero past the end of the export | `ENOSPC` |
/// | any other request past the end, or of length 0 | `EINVAL` |
/// | offset or length not a multiple of the minimum block size (when enforced) | `EINVAL` |
/// | a command or flag that was not advertised, or does not apply to the command | `EINVAL` |
/// | flush with a non-zero offset or length | `EINVAL` |
/// | read or write payload above the maximum payload | `EINVAL` |
public struct RequestValidator: Sendable {
    /// The capabilities requests are checked against.
    public let capabilities: Capabilities
    /// Whether structured replies were negotiated (the DF flag is valid only then).
    public let structuredReplies: Bool

    /// Creates a validator for one connection.
    public init(capabilities: Capabilities, structuredReplies: Bool = false) {
        self.capabilities = capabilities
        self.structuredReplies = structuredReplies
    }

    /// Throws the error the protocol prescribes if the request is not valid; returns normally otherwise.
    @inlinable
    public func validate(_ command: Command, offset: UInt64, length: UInt64, flags: CommandFlags) throws(NBDError) {
        let caps = capabilities
        // Flags first: an unknown or misplaced flag is EINVAL whatever the command.
        if !flags.isSubset(of: .known) {
            throw NBDError(.invalidArgument, "unknown command flags 0x\(String(flags.rawValue, radix: 16)) on \(command)")
        }
        if flags.contains(.fua) {
            guard caps.fua != .none else {
                throw NBDError(.invalidArgument, "FUA flag on \(command) but FUA was not advertised")
            }
        }
        if flags.contains(.noHole) && command != .writeZeroes {
            throw NBDError(.invalidArgument, "NO_HOLE flag is only valid on write zeroes")
        }
        if flags.contains(.fastZero) && (command != .writeZeroes || !caps.canFastZero) {
            throw NBDError(.invalidArgument, "FAST_ZERO flag is only valid on write zeroes when advertised")
        }
        if flags.contains(.requestOne) && command != .blockStatus {
            throw NBDError(.invalidArgument, "REQ_ONE flag is only valid on block status")
        }
        if flags.contains(.dontFragment) && (command != .read || !structuredReplies) {
            throw NBDError(.invalidArgument, "DF flag is only valid on reads with structured replies")
        }

        switch command {
        case .flush:
            guard caps.canFlush else { throw NBDError(.invalidArgument, "flush was not advertised") }
            guard offset == 0 && length == 0 else {
                throw NBDError(.invalidArgument, "flush must have offset and length 0 (got \(offset), \(length))")
            }
            return
        case .disconnect:
            return
        case .write, .writeZeroes, .trim:
            guard caps.isWritable else {
                throw NBDError(.notPermitted, "\(command) on a read-only export")
            }
            if command == .writeZeroes && !caps.canZero {
                throw NBDError(.invalidArgument, "write zeroes was not advertised")
            }
            if command == .trim && !caps.canTrim {
                throw NBDError(.invalidArgument, "trim was not advertised")
            }
        case .cache:
            guard caps.cache != .none else { throw NBDError(.invalidArgument, "cache was not advertised") }
        case .blockStatus:
            guard caps.canExtents else { throw NBDError(.invalidArgument, "block status was not negotiated") }
        case .read:
            break
        }

        if (command == .read || command == .write) && length > UInt64(caps.blockSize.acceptedMaximumPayload) {
            throw NBDError(
                .invalidArgument,
                "\(command) of \(length) bytes exceeds the maximum payload \(caps.blockSize.acceptedMaximumPayload)")
        }
        let (end, overflow) = offset.addingReportingOverflow(length)
        if length == 0 || overflow || end > caps.size {
            let code: NBDError.Code = (command == .write || command == .writeZeroes) && length > 0 ? .noSpace : .invalidArgument
            throw NBDError(
                code, "\(command) of \(length) bytes at offset \(offset) is outside the export of \(caps.size) bytes")
        }
        let minimum = UInt64(caps.blockSize.minimum)
        if minimum > 1 && caps.blockSize.isEnforced && (offset % minimum != 0 || length % minimum != 0) {
            throw NBDError(
                .invalidArgument,
                "\(command) at offset \(offset), length \(length) is not aligned to the minimum block size \(minimum)")
        }
    }
}

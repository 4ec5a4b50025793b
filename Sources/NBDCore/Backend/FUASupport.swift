/// How a layer handles the FUA (force unit access) flag, as nbdkit's `can_fua` reports it.
public enum FUASupport: Int, Sendable, Hashable, Comparable, CustomStringConvertible {
    /// FUA is not supported; `NBD_FLAG_SEND_FUA` is not advertised.
    case none = 0
    /// FUA requests are honoured by doing the operation and then a flush.
    case emulated = 1
    /// The layer honours FUA itself.
    case native = 2

    public static func < (lhs: FUASupport, rhs: FUASupport) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .none: "none"
        case .emulated: "emulate"
        case .native: "native"
        }
    }
}

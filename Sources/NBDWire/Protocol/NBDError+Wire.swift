import NBDCore

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

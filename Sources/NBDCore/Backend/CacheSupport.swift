/// How a layer handles `NBD_CMD_CACHE`, as nbdkit's `can_cache` reports it.
public enum CacheSupport: Int, Sendable, Hashable, CustomStringConvertible {
    /// Cache requests are not supported; `NBD_FLAG_SEND_CACHE` is not advertised.
    case none = 0
    /// Cache requests are honoured by reading the range and discarding the data.
    case emulated = 1
    /// The layer prefetches itself.
    case native = 2

    public var description: String {
        switch self {
        case .none: "none"
        case .emulated: "emulate"
        case .native: "native"
        }
    }
}

/// A set of backend operations, used to say which of them may block for a long time.
public struct Operations: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Reads.
    public static let read = Operations(rawValue: 1 << 0)
    /// Writes.
    public static let write = Operations(rawValue: 1 << 1)
    /// Write-zeroes requests.
    public static let zero = Operations(rawValue: 1 << 2)
    /// Trims.
    public static let trim = Operations(rawValue: 1 << 3)
    /// Flushes.
    public static let flush = Operations(rawValue: 1 << 4)
    /// Cache (prefetch) requests.
    public static let cache = Operations(rawValue: 1 << 5)
    /// Block status (extents) requests.
    public static let extents = Operations(rawValue: 1 << 6)
    /// Any write, zero or trim that carries the FUA flag.
    public static let fuaRequests = Operations(rawValue: 1 << 7)

    /// Every operation.
    public static let all: Operations = [.read, .write, .zero, .trim, .flush, .cache, .extents, .fuaRequests]
}

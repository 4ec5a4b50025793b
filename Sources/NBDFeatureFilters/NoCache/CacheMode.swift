/// How the nocache filter handles `NBD_CMD_CACHE`: nbdkit's `cachemode` parameter.
public enum CacheMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Cache requests are not advertised. The default.
    case none
    /// Cache requests are advertised and carried out by reading the range and discarding the data,
    /// whatever the layer below could do itself.
    case emulate
    /// Cache requests are advertised and answered at once without doing anything.
    case nop

    public var description: String { rawValue }
}

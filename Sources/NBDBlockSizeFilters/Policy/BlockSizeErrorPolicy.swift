/// What the blocksize-policy filter does with a request that breaks the advertised constraints:
/// nbdkit's `blocksize-error-policy`.
public enum BlockSizeErrorPolicy: String, Sendable, Hashable, CaseIterable {
    /// Pass it to the layer below, which may accept it, split it, or fail it. The default.
    case allow
    /// Fail it with `EINVAL`; the layer below never sees it. A request that ends exactly at the end
    /// of an export whose size is not a multiple of the minimum may have an unaligned length.
    case error
    /// As ``error``, and the unaligned tail of such an export cannot be reached at all (nbdkit 1.44).
    case strictError = "strict-error"
}

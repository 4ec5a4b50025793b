import NBDCore

/// The cow filter's settings, nbdkit's parameters one for one.
public struct COWConfiguration: Sendable, Hashable {
    /// `cow-block-size=`: the overlay's block size, a power of two from 4096 (default 64 KiB, as nbdkit).
    public var blockSize: Int
    /// `cow-on-read=`: whether reads copy their blocks into the overlay (default off).
    package var onRead: OnReadSetting
    /// `cow-on-cache=`: whether cache (prefetch) requests copy their blocks into the overlay (default off).
    public var onCache: Bool
    /// Where the overlay file is created; `nil` means `TMPDIR`, or `/var/tmp`.
    public var directory: String?

    /// Creates a configuration; the defaults are nbdkit's.
    public init(blockSize: Int = 65536, cowOnRead: Bool = false, onCache: Bool = false, directory: String? = nil) {
        self.blockSize = blockSize
        self.onRead = cowOnRead ? .on : .off
        self.onCache = onCache
        self.directory = directory
    }

    /// Checks the block size with nbdkit's limits; the message names the parameter.
    public func validate() throws(NBDError) {
        guard blockSize >= 4096, blockSize & (blockSize - 1) == 0, blockSize <= Int(UInt32.max) else {
            throw NBDError(.invalidArgument, "cow-block-size=\(blockSize): must be a power of 2 from 4096 to 2G")
        }
    }
}

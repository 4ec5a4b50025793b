import NBDCore

/// The cache filter's settings, nbdkit's parameters one for one.
public struct CacheConfiguration: Sendable, Hashable {
    /// `cache=`: writeback (default), writethrough or unsafe.
    public var mode: CacheMode
    /// `cache-min-block-size=`: the smallest cache block, a power of two ≥ 4096 (default 64 KiB). The
    /// block used is this or the temporary filesystem's block size, whichever is larger.
    public var minimumBlockSize: Int
    /// `cache-on-read=`: whether reads fill the cache (default off).
    package var onRead: OnReadSetting
    /// `cache-max-size=`: the most bytes the cache file may hold, or `nil` for no limit (at least 1 MiB).
    public var maximumSize: UInt64?
    /// `cache-high-threshold=`: the percentage of ``maximumSize`` at which reclaiming starts (default 95).
    public var highThreshold: Int
    /// `cache-low-threshold=`: the percentage of ``maximumSize`` reclaiming brings it down to (default 80).
    public var lowThreshold: Int
    /// Where the cache file is created; `nil` means `TMPDIR`, or `/var/tmp`.
    public var directory: String?

    /// Creates a configuration; the defaults are nbdkit's.
    public init(
        mode: CacheMode = .writeback, minimumBlockSize: Int = 65536, cacheOnRead: Bool = false,
        maximumSize: UInt64? = nil, highThreshold: Int = 95, lowThreshold: Int = 80, directory: String? = nil
    ) {
        self.mode = mode
        self.minimumBlockSize = minimumBlockSize
        self.onRead = cacheOnRead ? .on : .off
        self.maximumSize = maximumSize
        self.highThreshold = highThreshold
        self.lowThreshold = lowThreshold
        self.directory = directory
    }

    /// Checks the combination, with nbdkit's limits; the message names the parameter.
    public func validate() throws(NBDError) {
        if minimumBlockSize < 4096 || minimumBlockSize & (minimumBlockSize - 1) != 0
            || minimumBlockSize > Int(UInt32.max)
        {
            throw NBDError(
                .invalidArgument, "cache-min-block-size=\(minimumBlockSize): must be a power of 2 from 4096 to 2G")
        }
        if let maximumSize, maximumSize < 1 << 20 {
            throw NBDError(.invalidArgument, "cache-max-size=\(maximumSize): too small, the minimum is 1M")
        }
        if highThreshold <= 0 { throw NBDError(.invalidArgument, "cache-high-threshold must be greater than zero") }
        if lowThreshold <= 0 { throw NBDError(.invalidArgument, "cache-low-threshold must be greater than zero") }
        if maximumSize != nil && lowThreshold >= highThreshold {
            throw NBDError(
                .invalidArgument,
                "cache-low-threshold (\(lowThreshold)) must be less than cache-high-threshold (\(highThreshold))")
        }
    }
}

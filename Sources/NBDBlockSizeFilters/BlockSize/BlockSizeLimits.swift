import NBDCore

/// The blocksize filter's parameters as configured (`minblock`, `maxdata`, `maxlen`), and the limits
/// one connection uses once they are combined with the layer below's constraints.
public struct BlockSizeLimits: Sendable, Hashable {
    /// The alignment and smallest request the layer below receives (a power of two, at most 64 KiB).
    public var minimumBlock: UInt32
    /// The largest read or write the layer below receives (a multiple of ``minimumBlock``).
    public var maximumData: UInt32
    /// The largest zero, trim, cache or extents request the layer below receives (a multiple of
    /// ``minimumBlock``).
    public var maximumLength: UInt32

    /// nbdkit's ceiling for a single request with data: 64 MiB.
    public static let dataCeiling: UInt32 = 64 << 20

    /// Creates limits as given; `resolved(configured:below:)` derives them for one connection.
    public init(minimumBlock: UInt32, maximumData: UInt32, maximumLength: UInt32) {
        self.minimumBlock = minimumBlock
        self.maximumData = maximumData
        self.maximumLength = maximumLength
    }

    /// The limits for a connection whose layer below advertises `below`, from the parameters given
    /// (`nil` where not given), as nbdkit's `prepare` computes them: `minblock` is raised to the layer
    /// below's minimum; `maxdata` defaults to 64 MiB (or `maxlen`, if smaller) and is lowered to the
    /// layer below's maximum payload; both maxima are rounded down to `minblock`.
    public static func resolved(
        minimumBlock: UInt32?, maximumData: UInt32?, maximumLength: UInt32?, below: BlockSizeConstraints
    ) throws(NBDError) -> BlockSizeLimits {
        let block = max(minimumBlock ?? 1, below.minimum, 1)
        var data = maximumData ?? min(maximumLength ?? dataCeiling, dataCeiling)
        data = min(data, below.maximumPayload)
        data -= data % block
        let length = (maximumLength ?? UInt32.max) / block * block
        guard data > 0 else {
            throw NBDError(
                .invalidArgument,
                "blocksize: maxdata is smaller than minblock \(block) after applying the layer below's maximum \(below.maximumPayload)"
            )
        }
        return BlockSizeLimits(minimumBlock: block, maximumData: data, maximumLength: length)
    }

    /// Checks the parameters as nbdkit's `config_complete` does: `minblock` a power of two up to
    /// 64 KiB, `maxdata` and `maxlen` multiples of it. Each error names the parameter.
    static func validate(minimumBlock: UInt32?, maximumData: UInt32?, maximumLength: UInt32?) throws(NBDError) {
        if let block = minimumBlock {
            guard block & (block - 1) == 0 else {
                throw NBDError(.invalidArgument, "minblock=\(block): must be a power of 2")
            }
            guard block <= 65536 else {
                throw NBDError(.invalidArgument, "minblock=\(block): must not exceed 65536 (64K)")
            }
            if let data = maximumData, data % block != 0 {
                throw NBDError(.invalidArgument, "maxdata=\(data): must be a multiple of minblock (\(block))")
            }
            if let length = maximumLength, length % block != 0 {
                throw NBDError(.invalidArgument, "maxlen=\(length): must be a multiple of minblock (\(block))")
            }
        }
    }
}

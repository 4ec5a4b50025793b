import NBDCore

/// The blocksize filter as a run-time layer: `nbd-serve --filter=blocksize memory 1G minblock=512
/// maxdata=64K`. One ``BlockRangeLock`` is shared by every connection of the export, so
/// read-modify-writes from different clients to the same block never lose a write.
public struct BlockSizeLayer: ConfigurableFilterLayer {
    public var name: String { Self.filterName }
    /// `minblock`, or `nil` for the layer below's minimum (or 1).
    public let minimumBlock: UInt32?
    /// `maxdata`, or `nil` for 64 MiB (capped by the layer below's maximum).
    public let maximumData: UInt32?
    /// `maxlen`, or `nil` for 4 GiB minus `minblock`.
    public let maximumLength: UInt32?
    /// The lock every connection's filter shares.
    public let lock = BlockRangeLock()

    /// Creates the layer; `nil` takes nbdkit's default. Throws when the values break nbdkit's rules.
    public init(minimumBlock: UInt32? = nil, maximumData: UInt32? = nil, maximumLength: UInt32? = nil) throws(NBDError)
    {
        try BlockSizeLimits.validate(minimumBlock: minimumBlock, maximumData: maximumData, maximumLength: maximumLength)
        self.minimumBlock = minimumBlock
        self.maximumData = maximumData
        self.maximumLength = maximumLength
    }

    public static var filterName: String { "blocksize" }
    public static var summary: String {
        "split, align and read-modify-write requests so the layer below only sees the sizes it accepts"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "minblock", "alignment and smallest request passed down, a power of 2 up to 64K",
                default: "the layer below's minimum, or 1"),
            ParameterDescription(
                "maxdata", "largest read or write passed down, a multiple of minblock", default: "64M"),
            ParameterDescription(
                "maxlen", "largest zero, trim, cache or extents request passed down, a multiple of minblock",
                default: "4G-minblock"),
        ]
    }

    /// Creates the layer from `minblock`, `maxdata` and `maxlen` (sizes; 0 is refused, as by nbdkit).
    public init(parameters: ParameterValues) throws(NBDError) {
        func parse(_ key: String) throws(NBDError) -> UInt32? {
            guard let size = try parameters.size(key) else { return nil }
            guard size > 0 else { throw NBDError(.invalidArgument, "\(key)=0: must be non-zero if given") }
            guard size <= UInt64(UInt32.max) else {
                throw NBDError(.invalidArgument, "\(key)=\(parameters[key] ?? ""): must be below 4G")
            }
            return UInt32(size)
        }
        try self.init(minimumBlock: parse("minblock"), maximumData: parse("maxdata"), maximumLength: parse("maxlen"))
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(
            try BlockSizeFilter(
                wrapping: next, minimumBlock: minimumBlock, maximumData: maximumData, maximumLength: maximumLength,
                lock: lock))
    }
}

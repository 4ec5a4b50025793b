import NBDCore

/// nbdkit's xz filter as a run-time `FilterLayer`: `nbd-serve --filter=xz file disk.img.xz`.
///
/// Each connection reads the file's index when it opens and keeps a cache of its own of up to
/// ``maximumDepth`` decoded blocks, as nbdkit does; a file that is not xz, is truncated or corrupt,
/// or has a block larger than ``maximumBlock`` is refused when the connection opens, with a message
/// saying which.
public struct XZLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The largest uncompressed block the filter accepts (nbdkit's `xz-max-block`, default 512M).
    public let maximumBlock: UInt64
    /// How many decoded blocks each connection keeps (nbdkit's `xz-max-depth`, default 8).
    public let maximumDepth: Int

    /// Creates the layer; the defaults are nbdkit's.
    public init(maximumBlock: UInt64 = 512 << 20, maximumDepth: Int = 8) {
        self.maximumBlock = maximumBlock
        self.maximumDepth = maximumDepth
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let index = try await XZIndex.read(from: next)
        return AnyBlockBackend(
            try BlockIndexedFilter(
                wrapping: next, index: index, format: XZIndex.format, maximumBlock: maximumBlock,
                maximumBlockParameter: "xz-max-block", cacheDepth: maximumDepth
            ) { block, input throws(NBDError) in try XZBlockDecoder.decode(block, from: input) })
    }
}

extension XZLayer: ConfigurableFilterLayer {
    public static var filterName: String { "xz" }
    public static var summary: String {
        "serve the uncompressed contents of an xz file below, read-only, seeking through its block index"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "xz-max-block", "refuse files with an uncompressed block larger than this size", default: "512M"),
            ParameterDescription(
                "xz-max-depth", "how many decoded blocks each connection caches (memory: block size x depth)",
                default: "8"),
        ]
    }

    /// Creates the layer from `xz-max-block` (a size) and `xz-max-depth` (at least 1).
    public init(parameters: ParameterValues) throws(NBDError) {
        let maximumBlock = try parameters.size("xz-max-block", default: 512 << 20)
        guard maximumBlock >= 1 else {
            throw NBDError(.invalidArgument, "xz-max-block=\(parameters["xz-max-block"] ?? ""): must be at least 1")
        }
        self.init(
            maximumBlock: maximumBlock,
            maximumDepth: try parameters.integer("xz-max-depth", in: 1...(1 << 20)) ?? 8)
    }
}

import NBDCore

/// nbdkit's lzip filter as a run-time `FilterLayer`: `nbd-serve --filter=lzip file disk.img.lz`.
///
/// Each connection reads the member list when it opens (walking the member trailers back from the
/// end of the file) and keeps a cache of its own of up to ``maximumDepth`` decoded members, as
/// nbdkit does. Files of many members (`plzip`, or `lzip` on split pieces) serve random reads in
/// time proportional to one member; a single-member file is decoded whole, and refused when larger
/// than ``maximumBlock``. Decoding uses liblzma, which the xz filter links anyway: no other library.
public struct LzipLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The largest uncompressed member the filter accepts (nbdkit's `lzip-max-block`, default 512M).
    public let maximumBlock: UInt64
    /// How many decoded members each connection keeps (nbdkit's `lzip-max-depth`, default 8).
    public let maximumDepth: Int

    /// Creates the layer; the defaults are nbdkit's.
    public init(maximumBlock: UInt64 = 512 << 20, maximumDepth: Int = 8) {
        self.maximumBlock = maximumBlock
        self.maximumDepth = maximumDepth
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let index = try await LzipIndex.read(from: next)
        return AnyBlockBackend(
            try BlockIndexedFilter(
                wrapping: next, index: index, format: LzipIndex.format, maximumBlock: maximumBlock,
                maximumBlockParameter: "lzip-max-block", cacheDepth: maximumDepth
            ) { member, input throws(NBDError) in try LzipMemberDecoder.decode(member, from: input) })
    }
}

extension LzipLayer: ConfigurableFilterLayer {
    public static var filterName: String { "lzip" }
    public static var summary: String {
        "serve the uncompressed contents of an lzip file below, read-only, seeking member by member"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "lzip-max-block", "refuse files with a member of more uncompressed bytes than this size",
                default: "512M"),
            ParameterDescription(
                "lzip-max-depth", "how many decoded members each connection caches (memory: member size x depth)",
                default: "8"),
        ]
    }

    /// Creates the layer from `lzip-max-block` (a size) and `lzip-max-depth` (at least 1).
    public init(parameters: ParameterValues) throws(NBDError) {
        let maximumBlock = try parameters.size("lzip-max-block", default: 512 << 20)
        guard maximumBlock >= 1 else {
            throw NBDError(.invalidArgument, "lzip-max-block=\(parameters["lzip-max-block"] ?? ""): must be at least 1")
        }
        self.init(
            maximumBlock: maximumBlock,
            maximumDepth: try parameters.integer("lzip-max-depth", in: 1...(1 << 20)) ?? 8)
    }
}

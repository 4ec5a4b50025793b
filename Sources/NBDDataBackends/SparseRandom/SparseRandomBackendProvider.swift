import NBDCore

/// nbdkit's `sparse-random` plugin: an export shaped like a virtual machine's disk, with runs of
/// random data between holes, the same for the same `seed=` on every run.
///
/// About `percent` of the 4 KiB blocks hold data, in runs of `runLength` bytes on average. A data
/// block is one random non-zero byte repeated, or with `randomContent` random bytes throughout.
/// Block status reports the holes, so copying tools can skip them; writes are checked against the
/// data (`EIO` if they differ), so `nbdcopy "$uri" "$uri"` tests a copying tool.
public struct SparseRandomBackendProvider: BackendProvider {
    public typealias Backend = SparseRandomBackend

    /// The export size in bytes.
    public let size: UInt64
    /// The seed the map and the data derive from.
    public let seed: UInt32
    /// Whether each byte of a data block is random (rather than one byte repeated).
    public let isRandomContent: Bool
    let map: SparseRandomMap

    /// Creates an export and draws its map of data and holes.
    ///
    /// - Parameters:
    ///   - size: the export size in bytes.
    ///   - seed: the seed the map and the data derive from.
    ///   - percent: the share of the export holding data, 0 to 100.
    ///   - runLength: the average length of a run of data in bytes, more than 0.
    ///   - randomContent: random bytes throughout each data block rather than one byte repeated.
    /// - Throws: `NBDError.Code.invalidArgument` for a size above 2^63 - 1, a percent outside 0...100
    ///   or a zero run length.
    public init(
        size: UInt64, seed: UInt32, percent: Double = 10, runLength: UInt64 = 16 << 20, randomContent: Bool = false
    ) throws(NBDError) {
        self.size = try checkedExportSize(size, backend: "sparse-random")
        guard percent >= 0 && percent <= 100 else {
            throw NBDError(.invalidArgument, "percent=\(percent): expected a number from 0 to 100")
        }
        guard runLength > 0 else {
            throw NBDError(.invalidArgument, "runlength=0: expected a length in bytes greater than 0, such as 16M")
        }
        self.seed = seed
        self.isRandomContent = randomContent
        map = SparseRandomMap(size: size, seed: seed, percent: percent, runLength: runLength)
    }

    /// How many 4 KiB blocks hold data.
    public var dataBlockCount: Int { map.dataBlockCount }

    /// Opens a connection's view; read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> SparseRandomBackend {
        SparseRandomBackend(
            map: map, size: size, seed: seed, isRandomContent: isRandomContent, isReadOnly: connection.isReadOnly)
    }
}

extension SparseRandomBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "sparse-random" }
    public static var summary: String {
        "runs of seeded random data between holes, as nbdkit's sparse-random plugin (sparse-random SIZE)"
    }
    public static var parameters: [ParameterDescription] {
        [
            GeneratedExportSize.description(required: false),
            RandomBackendProvider.seedParameter,
            ParameterDescription(
                "percent", "the share of the export holding data, a number from 0 to 100", default: "10"),
            ParameterDescription(
                "runlength", "the average length of a run of data, e.g. 1M; more than 0", default: "16M"),
            ParameterDescription(
                "random-content",
                "true for random bytes throughout each data block, false for one random byte repeated",
                default: "false"),
        ]
    }
    public static var positionalParameter: String? { "size" }
    public static var example: String { "sparse-random 1G seed=42" }

    /// Creates the export from its parameters.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        var percent = 10.0
        if let text = parameters["percent"] {
            guard let value = Double(text), value.isFinite, value >= 0, value <= 100 else {
                throw NBDError(.invalidArgument, "percent=\(text): expected a number from 0 to 100, such as 10 or 2.5")
            }
            percent = value
        }
        let runLength = try parameters.size("runlength") ?? 16 << 20
        guard runLength > 0 else {
            throw NBDError(.invalidArgument, "runlength=0: expected a length in bytes greater than 0, such as 16M")
        }
        try self.init(
            size: try GeneratedExportSize.read(parameters, backend: "sparse-random", default: 0),
            seed: try RandomBackendProvider.seed(parameters), percent: percent, runLength: runLength,
            randomContent: try parameters.boolean("random-content", default: false))
    }
}

import Glibc
import NBDCore

/// nbdkit's `random` plugin: an export of pseudo-random bytes, the same for the same `seed=` on
/// every run and the same bytes nbdkit serves for that seed.
///
/// Writes are checked against the data (`EIO` if they differ), so `nbdcopy "$uri" "$uri"` tests a
/// copying tool end to end. The generator is not cryptographically secure.
public struct RandomBackendProvider: BackendProvider {
    public typealias Backend = RandomBackend

    /// The export size in bytes.
    public let size: UInt64
    /// The seed the bytes are derived from.
    public let seed: UInt32

    /// Creates an export of `size` bytes from `seed`.
    ///
    /// - Throws: `NBDError.Code.invalidArgument` if `size` is larger than 2^63 - 1.
    public init(size: UInt64, seed: UInt32) throws(NBDError) {
        self.size = try checkedExportSize(size, backend: "random")
        self.seed = seed
    }

    /// Opens a connection's view; read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> RandomBackend {
        RandomBackend(size: size, seed: seed, isReadOnly: connection.isReadOnly)
    }
}

extension RandomBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "random" }
    public static var summary: String {
        "seeded pseudo-random bytes; writes must match them, as nbdkit's random plugin (random SIZE)"
    }
    public static var parameters: [ParameterDescription] {
        [
            GeneratedExportSize.description(required: false),
            seedParameter,
        ]
    }
    public static var positionalParameter: String? { "size" }
    public static var example: String { "random 1G seed=42" }

    static var seedParameter: ParameterDescription {
        ParameterDescription(
            "seed", "a number from 0 to 4294967295; the same seed gives the same data on every run",
            default: "the time the server started, in seconds")
    }

    /// Creates the export from `size` and `seed`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try self.init(
            size: try GeneratedExportSize.read(parameters, backend: "random", default: 0),
            seed: try Self.seed(parameters))
    }

    /// `seed=` (decimal, hex or octal, 32 bits), or the current time in seconds as nbdkit chooses.
    static func seed(_ parameters: ParameterValues) throws(NBDError) -> UInt32 {
        guard let text = parameters["seed"] else { return UInt32(truncatingIfNeeded: time(nil)) }
        guard let value = parseCInteger(text), value <= UInt64(UInt32.max) else {
            throw NBDError(.invalidArgument, "seed=\(text): expected a whole number from 0 to 4294967295")
        }
        return UInt32(value)
    }
}

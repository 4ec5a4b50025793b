import NBDCore

/// The readonly filter as a run-time `FilterLayer`: `nbd-serve --filter=readonly file disk.img
/// readonly-file=/run/disk.ro`.
public struct ReadOnlyLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The file whose existence makes the export read-only, or `nil` for always read-only.
    public let switchFile: String?

    /// Creates the layer; without `switchFile` the export is always read-only.
    public init(switchFile: String? = nil) {
        self.switchFile = switchFile
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(ReadOnlyFilter(wrapping: next, switchFile: switchFile))
    }
}

extension ReadOnlyLayer: ConfigurableFilterLayer {
    public static var filterName: String { "readonly" }
    public static var summary: String {
        "make the export read-only (writes get EPERM), always or only while readonly-file exists"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "readonly-file",
                "a path: the export is read-only while this file exists and writable otherwise (default: always read-only)"
            )
        ]
    }

    /// Creates the layer from `readonly-file`, which may be given once (as in nbdkit).
    public init(parameters: ParameterValues) throws(NBDError) {
        let files = parameters.all("readonly-file")
        guard files.count <= 1 else {
            throw NBDError(.invalidArgument, "readonly-file=... was given \(files.count) times: give it once")
        }
        if let file = files.first, file.isEmpty {
            throw NBDError(.invalidArgument, "readonly-file=: expected a path")
        }
        self.init(switchFile: files.first)
    }
}

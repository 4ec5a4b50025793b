import NBDCore

/// A backend `nbd-serve` can serve, with the parameters it takes.
public struct BackendKind: Sendable, Hashable {
    /// The name on the command line.
    public var name: String
    /// A one-line description for `--help`.
    public var summary: String
    /// The parameters, for `--help` and for routing `KEY=VALUE`.
    public var parameters: [ParameterDescription]
    /// The parameter that a plain argument after the backend name sets (`memory 1G` is `size=1G`).
    public var positionalParameter: String

    /// nbdkit's `memory` plugin: a sparse RAM disk shared by every connection.
    public static let memory = BackendKind(
        name: "memory", summary: "a sparse RAM disk shared by all connections (memory SIZE)",
        parameters: [ParameterDescription("size", "(required) the export size, e.g. 1G; suffixes K M G T P E")],
        positionalParameter: "size")
    /// nbdkit's `file` plugin: a regular file or block device.
    public static let file = BackendKind(
        name: "file", summary: "a regular file or block device (file PATH)",
        parameters: [ParameterDescription("file", "(required) the path of the file or device")],
        positionalParameter: "file")
    /// The test export whose connections each keep a private cache (see ``NBDBackends/ConnectionCacheProvider``).
    public static let connectionCache = BackendKind(
        name: "connection-cache",
        summary: "a test export whose connections each keep a private cache until they flush",
        parameters: [
            ParameterDescription("size", "(required) the export size, e.g. 32 or 1M"),
            ParameterDescription("init", "text stored at offset 0 of the initial image (default empty)"),
            ParameterDescription("strictfua", "true: FUA writes through only the request's range (default false)"),
        ],
        positionalParameter: "size")

    /// Every backend, in `--help` order.
    public static let all: [BackendKind] = [.memory, .file, .connectionCache]

    /// The backend called `name`, if any.
    public static func named(_ name: String) -> BackendKind? {
        all.first { $0.name == name }
    }

    /// Whether `key` is one of this backend's parameters.
    public func accepts(_ key: String) -> Bool {
        parameters.contains { $0.name == key }
    }
}

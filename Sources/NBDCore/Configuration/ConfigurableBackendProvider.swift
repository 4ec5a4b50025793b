/// A ``BackendProvider`` that describes itself to a command line and can be built from nbdkit-style
/// parameters, as nbdkit's plugins do with `config` and `config_help`: `nbd-serve memory 1G` and
/// `nbd-serve file disk.img` create theirs through it.
public protocol ConfigurableBackendProvider: BackendProvider {
    /// The name on the command line, nbdkit's plugin name where nbdkit has the plugin.
    static var backendName: String { get }
    /// A one-line description for `--help`.
    static var summary: String { get }
    /// The parameters this backend accepts, in `--help` order.
    static var parameters: [ParameterDescription] { get }
    /// The parameter a plain argument after the backend name sets (`memory 1G` is `memory size=1G`),
    /// or `nil` when the backend takes none.
    static var positionalParameter: String? { get }
    /// An example of the backend's arguments, for help and error messages, such as `memory 1G`.
    static var example: String { get }
    /// Whether keys not in ``parameters`` (and not taken by a filter) are the backend's too, passed
    /// on for it to judge, as nbdkit's sh and eval plugins pass them to the script's `config`.
    /// `false` by default: an unknown key is refused before the backend starts.
    static var acceptsUnlistedParameters: Bool { get }

    /// Creates the provider from its parameters (only keys listed in ``parameters``, unless
    /// ``acceptsUnlistedParameters``; the positional argument under ``positionalParameter``).
    ///
    /// May do I/O (open a file, connect to an upstream server). Throws ``NBDError`` whose message
    /// names the parameter and what it accepts.
    init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError)
}

extension ConfigurableBackendProvider {
    public static var acceptsUnlistedParameters: Bool { false }

    /// Whether `key` is one of this backend's parameters.
    public static func accepts(_ key: String) -> Bool {
        parameters.contains { $0.name == key }
    }
}

/// What a command line tells every backend besides its own parameters.
public struct BackendOptions: Sendable {
    /// The export is served read-only (`-r`): open storage for reading only.
    public var isReadOnly: Bool
    /// Where to print debug messages (`-v`), or `nil`.
    public var logger: (@Sendable (String) -> Void)?

    /// Creates the options.
    public init(isReadOnly: Bool = false, logger: (@Sendable (String) -> Void)? = nil) {
        self.isReadOnly = isReadOnly
        self.logger = logger
    }
}

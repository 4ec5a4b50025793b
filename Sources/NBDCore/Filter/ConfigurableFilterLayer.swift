/// A parameter a filter or backend accepts on the command line, for `--help` and for reporting
/// unknown keys.
public struct ParameterDescription: Sendable, Hashable {
    /// The key, as in `key=value`.
    public var name: String
    /// What the parameter does, its values and default, in one or two sentences.
    public var summary: String

    /// Describes the parameter `name`.
    public init(_ name: String, _ summary: String) {
        self.name = name
        self.summary = summary
    }
}

/// A ``FilterLayer`` that can be built from nbdkit-style `key=value` parameters, so that a command
/// line such as `nbd-serve --filter=stats memory 1G statsfile=/tmp/s.txt` can create it.
public protocol ConfigurableFilterLayer: FilterLayer {
    /// The name used with `--filter=NAME`.
    static var filterName: String { get }
    /// A one-line description for `--help`.
    static var summary: String { get }
    /// The parameters this filter accepts. The command line hands each `key=value` to the first
    /// filter (outermost first) that declares the key, and then to the backend.
    static var parameters: [ParameterDescription] { get }

    /// Creates the layer from the parameters given for it (only keys listed in ``parameters``).
    /// Throws ``NBDError`` with a message naming the parameter and the accepted values when a value
    /// is invalid or a required parameter is missing.
    init(parameters: [String: String]) throws(NBDError)
}

/// Parses nbdkit's boolean values: `1/true/yes/on` and `0/false/no/off` (any case).
public func parseBoolean(_ text: String, for key: String) throws(NBDError) -> Bool {
    switch text.lowercased() {
    case "1", "true", "yes", "on": return true
    case "0", "false", "no", "off": return false
    default:
        throw NBDError(.invalidArgument, "\(key)=\(text): expected a boolean (true/false, yes/no, on/off, 1/0)")
    }
}

/// A `key=value` parameter that a filter or backend accepts, as `nbd-serve --help` shows it and as
/// the command line routes it: each key goes to the first filter (outermost first) that declares it,
/// otherwise to the backend.
public struct ParameterDescription: Sendable, Hashable {
    /// The key, as in `key=value`.
    public var name: String
    /// What the parameter does and which values it takes, in one or two sentences.
    public var summary: String
    /// The value used when the parameter is not given, as the user would write it, or `nil` when
    /// there is none (a required parameter, or one whose absence means "off").
    public var defaultValue: String?
    /// Whether the filter or backend cannot work without it.
    public var isRequired: Bool
    /// Whether the parameter may be given more than once (nbdkit's `protect=`), each value counting.
    public var isRepeatable: Bool

    /// Describes the parameter `name`.
    public init(
        _ name: String, _ summary: String, default defaultValue: String? = nil, required isRequired: Bool = false,
        repeatable isRepeatable: Bool = false
    ) {
        self.name = name
        self.summary = summary
        self.defaultValue = defaultValue
        self.isRequired = isRequired
        self.isRepeatable = isRepeatable
    }

    /// The line `--help` prints after the parameter's key: the summary, then whether it is required,
    /// repeatable, and its default.
    public var helpText: String {
        var text = summary
        var notes: [String] = []
        if isRequired { notes.append("required") }
        if isRepeatable { notes.append("repeatable") }
        if let defaultValue { notes.append("default \(defaultValue.isEmpty ? "empty" : defaultValue)") }
        if !notes.isEmpty { text += " (\(notes.joined(separator: "; ")))" }
        return text
    }
}

import Foundation
import NBDCore

/// The variables `$VAR` of a `data=` string: the command line's other `KEY=VALUE` parameters
/// first, then the environment, as nbdkit's data plugin looks them up. Records which command-line
/// variables the string used, so that one it never used can be refused as a mistyped parameter.
final class DataVariables {
    private let values: [String: String]
    private var used: Set<String> = []

    init(_ entries: [ParameterValues.Entry]) {
        // The last of a repeated key wins, as a later command-line setting does.
        values = Dictionary(entries.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
    }

    /// The value of `$name`, or `nil` if neither the command line nor the environment sets it.
    func value(of name: String) -> String? {
        if let value = values[name] {
            used.insert(name)
            return value
        }
        return ProcessInfo.processInfo.environment[name]
    }

    /// The command-line variables not used (yet), sorted.
    var unused: [String] { values.keys.filter { !used.contains($0) }.sorted() }
}

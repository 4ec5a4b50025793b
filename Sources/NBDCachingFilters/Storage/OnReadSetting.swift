import Glibc
import NBDCore

/// nbdkit's `cache-on-read` and `cow-on-read` value: always, never, or while a file exists.
package enum OnReadSetting: Sendable, Hashable, CustomStringConvertible {
    /// Never copy what is read (the default).
    case off
    /// Always copy what is read.
    case on
    /// Copy while the file at this absolute path exists, so an operator can switch it at run time.
    case whilePathExists(String)

    /// Parses `true|false|/PATH` (nbdkit's booleans, or an absolute path) for the parameter `key`.
    package static func parse(_ text: String, for key: String) throws(NBDError) -> OnReadSetting {
        if text.hasPrefix("/") { return .whilePathExists(text) }
        do {
            return try parseBoolean(text, for: key) ? .on : .off
        } catch {
            throw NBDError(.invalidArgument, "\(key)=\(text): expected true, false or an absolute /PATH")
        }
    }

    /// Whether reads are copied right now (one `access` call for the path form).
    package var isActive: Bool {
        switch self {
        case .off: false
        case .on: true
        case .whilePathExists(let path): access(path, F_OK) == 0
        }
    }

    package var description: String {
        switch self {
        case .off: "false"
        case .on: "true"
        case .whilePathExists(let path): path
        }
    }
}

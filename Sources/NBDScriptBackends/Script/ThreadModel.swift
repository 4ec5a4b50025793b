/// How many script calls may run at once, as the script's `thread_model` method asks (nbdkit's
/// thread models). Without the method, calls are serialised, the safe default.
package enum ThreadModel: String, Sendable, Hashable {
    /// One connection at a time in nbdkit; here, one call at a time across all connections (see
    /// Documentation/Backends.md).
    case serializeConnections = "serialize_connections"
    /// One call at a time across all connections.
    case serializeAllRequests = "serialize_all_requests"
    /// One call at a time per connection; connections run in parallel.
    case serializeRequests = "serialize_requests"
    /// Any number of calls at once.
    case parallel

    /// Reads what `thread_model` printed: nbdkit's names with `_` or `-`, in any case; anything
    /// else is the safe default, as in nbdkit.
    package init(printed text: String) {
        let name = String(text.trimmingWhitespace.lowercased().map { $0 == "-" ? "_" : $0 })
        self = ThreadModel(rawValue: name) ?? .serializeAllRequests
    }
}

extension String {
    /// The text without leading and trailing spaces, tabs and newlines.
    var trimmingWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        return String(self.drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }

    /// The text with at most one final newline removed, as nbdkit reads a handle or a name.
    var droppingFinalNewline: String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}

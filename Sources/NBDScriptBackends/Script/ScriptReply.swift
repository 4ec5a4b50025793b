/// What a method's exit status means, after errors were turned into ``NBDError``s.
package enum ScriptReply: Sendable, Equatable {
    /// Exit 0: done (true, for a `can_*` method), with what it printed.
    case ok([UInt8])
    /// Exit 2: the script does not implement the method; the caller uses nbdkit's default.
    case missing
    /// Exit 3: false, for a `can_*` or `is_*` method.
    case no
}

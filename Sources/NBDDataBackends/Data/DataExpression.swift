/// One element of nbdkit's data format, as parsed; ``DataEvaluator`` turns a list of them into a
/// ``DataImage``.
indirect enum DataExpression: Sendable, Equatable {
    /// Bytes to store at the current offset: a byte, a string, a word, `raw=` text.
    case bytes([UInt8])
    /// `count` copies of `byte` (`0xff*16`).
    case fill(byte: UInt8, count: UInt64)
    /// `@OFFSET`: move the current offset.
    case absoluteOffset(UInt64)
    /// `@+N` or `@-N`: move the current offset by `N`.
    case relativeOffset(Int64)
    /// `@^N`: move the current offset up to the next multiple of `N` (a power of two).
    case align(UInt64)
    /// `<FILE`: the file's contents.
    case file(String)
    /// `<(SCRIPT)`: what the shell script writes to its standard output.
    case script(String)
    /// `( ... )` or a `$VAR`'s value: a nested list, with its own offsets and names.
    case group([DataExpression])
    /// `EXPR*N`.
    case repeated(DataExpression, count: UInt64)
    /// `EXPR[N:M]`, `EXPR[N:]`, `EXPR[:M]`: bytes `start..<end` of the expression (`end` `nil` for
    /// all of it).
    case slice(DataExpression, start: UInt64, end: UInt64?)
    /// `EXPR -> \NAME`: binds the name for the rest of the scope; stores nothing.
    case assign(name: String, DataExpression)
    /// `\NAME`: the expression bound to the name.
    case name(String)

    /// Whether `*N`, `[N:M]` and `->` may follow this expression (they may not follow an offset
    /// change or an assignment, as in nbdkit).
    var isData: Bool {
        switch self {
        case .absoluteOffset, .relativeOffset, .align, .assign: false
        default: true
        }
    }
}

/// What one run of a script produced: how it ended and what it printed.
package struct ScriptRun: Sendable {
    /// How the process ended.
    package var termination: ScriptTermination
    /// Its standard output, up to the limit the caller gave.
    package var output: [UInt8]
    /// Whether it printed more than the limit on standard output (the rest was read and dropped).
    package var outputOverflowed: Bool
    /// The start of its standard error (enough for an errno name and a message).
    package var errorOutput: [UInt8]
}

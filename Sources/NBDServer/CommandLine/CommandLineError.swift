/// A command-line mistake, with a message that says what to do about it. `nbd-serve` prints it and
/// exits with status 1 before anything listens.
public struct CommandLineError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong and how to fix it.
    public var message: String

    /// Creates an error with the message to print.
    public init(_ message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

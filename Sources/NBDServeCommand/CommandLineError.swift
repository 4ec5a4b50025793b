/// A command-line mistake, with a message that says what to do about it. `nbd-serve` prints it and
/// exits with status 1 before anything listens.
package struct CommandLineError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong and how to fix it.
    package var message: String

    /// Creates an error with the message to print.
    package init(_ message: String) {
        self.message = message
    }

    /// The message.
    package var description: String { message }
}

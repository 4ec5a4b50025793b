import Logging
import NBDServer

extension ServerConfiguration {
    /// Sends the server's messages to a swift-log `Logger`: debug messages (``logger``: connections
    /// opening and closing, refused requests) at `messageLevel`, and what an operator should see
    /// even without debug output (``errorLogger``: an export that could not be opened, a connection
    /// refused at the limit, a client dropped for a protocol violation) at `problemLevel`.
    ///
    /// ```swift
    /// var configuration = ServerConfiguration()
    /// configuration.log(to: Logger(label: "nbd"))
    /// let server = NBDServer(provider: export, configuration: configuration)
    /// ```
    ///
    /// The logger's own level filters as usual: with the default `.info`, only problems appear.
    /// The server's messages are sentences today, so each arrives as the log message with the
    /// logger's metadata and no more; connection ids, export names, peers and errno values will
    /// arrive as metadata once the server reports structured events.
    ///
    /// - Parameters:
    ///   - logger: Where the messages go.
    ///   - messageLevel: The level of debug messages; `.debug` by default.
    ///   - problemLevel: The level of problems; `.error` by default.
    public mutating func log(
        to logger: Logger, messageLevel: Logger.Level = .debug, problemLevel: Logger.Level = .error
    ) {
        let messages = ServerLogSink(logger: logger, level: messageLevel)
        let problems = ServerLogSink(logger: logger, level: problemLevel)
        self.logger = { message in messages.log(message) }
        self.errorLogger = { message in problems.log(message) }
    }
}

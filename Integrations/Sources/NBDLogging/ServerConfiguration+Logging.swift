import Logging
import NBDServer

extension ServerConfiguration {
    /// Sends the server's events (``ServerConfiguration/eventHandler``) to a swift-log `Logger`, each
    /// at its own level (``ServerEvent/Level`` is swift-log's scale), with its facts as metadata:
    /// `nbd.event` (the kind, such as `connection-opened`), and as each kind has them `connection`,
    /// `export`, `errno`, `command`, `offset`, `length`, `address`, `connections`, `reason`.
    ///
    /// ```swift
    /// var configuration = ServerConfiguration()
    /// configuration.log(to: Logger(label: "nbd"))
    /// let server = NBDServer(provider: export, configuration: configuration)
    /// ```
    ///
    /// The logger's own level filters as usual: with the default `.info`, listening, connections
    /// opening and closing, exports opened and shutting down appear, and every problem; request
    /// failures arrive at `.warning`, refused requests and other detail at `.debug`. The message is
    /// the event's sentence without the `connection N:` prefix, which is metadata here.
    public mutating func log(to logger: Logger) {
        let sink = ServerEventLogSink(logger: logger)
        eventHandler = { event in sink.log(event) }
    }

    /// Sends the server's messages to a swift-log `Logger` as plain text at two chosen levels, the
    /// way the string loggers get them: debug messages (``logger``) at `messageLevel`, and what an
    /// operator should see even without debug output (``errorLogger``) at `problemLevel`. No metadata
    /// beyond the logger's own; prefer ``log(to:)``.
    public mutating func log(to logger: Logger, messageLevel: Logger.Level, problemLevel: Logger.Level) {
        let messages = ServerLogSink(logger: logger, level: messageLevel)
        let problems = ServerLogSink(logger: logger, level: problemLevel)
        self.logger = { message in messages.log(message) }
        self.errorLogger = { message in problems.log(message) }
    }
}

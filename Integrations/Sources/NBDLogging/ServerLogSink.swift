import Logging

/// One of the server's message callbacks, bound to a `Logger` and a level.
///
/// A struct holding the logger rather than a closure capturing it keeps the callback `Sendable`
/// without copying the logger on each message.
struct ServerLogSink: Sendable {
    let logger: Logger
    let level: Logger.Level

    func log(_ message: String) {
        logger.log(level: level, "\(message)")
    }
}

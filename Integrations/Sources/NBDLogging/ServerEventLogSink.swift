import Logging
import NBDServer

/// The server's event handler, bound to a `Logger`: levels mapped one to one, metadata as metadata.
struct ServerEventLogSink: Sendable {
    let logger: Logger

    func log(_ event: ServerEvent) {
        let level = Self.level(event.level)
        // Checked first so that a filtered-out event costs no metadata dictionary.
        guard logger.logLevel <= level else { return }
        var metadata: Logger.Metadata = ["nbd.event": .string(event.kind.rawValue)]
        for (key, value) in event.metadata { metadata[key] = .string(value) }
        logger.log(level: level, "\(event.message)", metadata: metadata)
    }

    static func level(_ level: ServerEvent.Level) -> Logger.Level {
        switch level {
        case .trace: .trace
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}

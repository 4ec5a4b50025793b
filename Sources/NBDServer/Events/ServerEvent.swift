/// Something the server did or saw, for logs and metrics: a level, a stable kind, a message for
/// people and metadata for machines (the connection, the export, the error).
///
/// Set ``ServerConfiguration/eventHandler`` to receive every event as it happens; the `NBDLogging`
/// bridge in `Integrations/` maps them to a swift-log `Logger`, levels and metadata included:
///
/// ```swift
/// configuration.eventHandler = { event in
///     if event.kind == .requestFailed { failures.add(event.metadata["errno"] ?? "?") }
/// }
/// ```
///
/// The string loggers (``ServerConfiguration/logger`` and ``ServerConfiguration/errorLogger``) get
/// the same events as text, as before: ``ServerEvent/Level/error`` and above through `errorLogger`,
/// the rest through `logger`.
public struct ServerEvent: Sendable, Hashable {
    /// How much an event matters, on swift-log's scale.
    public enum Level: Int, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
        /// Detail useful only while tracing a problem.
        case trace
        /// Detail for debugging: each refused request, each negotiated option.
        case debug
        /// Normal operation: listening, a connection opened or closed, shutting down.
        case info
        /// Normal but worth noticing: a client that broke the protocol during the handshake.
        case notice
        /// Something failed for a client, and the server carries on: a request the backend failed.
        case warning
        /// Something an operator must see: an export that could not be opened, a connection refused
        /// at the limit, a client dropped for a protocol violation or a timeout.
        case error
        /// The server cannot go on.
        case critical

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }

        /// The level's name as swift-log spells it (`trace` ... `critical`).
        public var description: String {
            switch self {
            case .trace: "trace"
            case .debug: "debug"
            case .info: "info"
            case .notice: "notice"
            case .warning: "warning"
            case .error: "error"
            case .critical: "critical"
            }
        }
    }

    /// What happened: a stable name to filter and count on. Extensible: new kinds may be added.
    public struct Kind: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        /// The kind's stable name, such as `connection-opened`.
        public var rawValue: String
        /// Creates a kind from its name.
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The server listens on an address (metadata `address`).
        public static let listening = Kind(rawValue: "listening")
        /// A connection was accepted (metadata `connection`, `connections`: how many are open now).
        public static let connectionOpened = Kind(rawValue: "connection-opened")
        /// A connection ended, after its backend was closed (metadata `connection`, `connections`).
        public static let connectionClosed = Kind(rawValue: "connection-closed")
        /// An export was opened for a client (metadata `connection`, `export`, `size`).
        public static let exportOpened = Kind(rawValue: "export-opened")
        /// A client was refused or dropped during the handshake (metadata `connection`, `reason`).
        public static let handshakeRefused = Kind(rawValue: "handshake-refused")
        /// A client did not finish the handshake within ``ServerConfiguration/negotiationTimeout``.
        public static let handshakeTimedOut = Kind(rawValue: "handshake-timed-out")
        /// The TLS handshake failed or TLS was refused (metadata `connection`).
        public static let tlsRefused = Kind(rawValue: "tls-refused")
        /// The stack refused to open an export for a client (metadata `connection`, `export`, `errno`).
        public static let exportOpenFailed = Kind(rawValue: "export-open-failed")
        /// The server refused a request before the stack saw it (metadata `connection`, `command`,
        /// `errno`).
        public static let requestRefused = Kind(rawValue: "request-refused")
        /// The stack failed a request (metadata `connection`, `command`, `offset`, `length`, `errno`).
        public static let requestFailed = Kind(rawValue: "request-failed")
        /// A client broke the protocol in the transmission phase and was disconnected.
        public static let protocolViolation = Kind(rawValue: "protocol-violation")
        /// A connection was refused because the server serves
        /// ``ServerConfiguration/maximumConnections`` already, or is stopping.
        public static let connectionLimitReached = Kind(rawValue: "connection-limit-reached")
        /// ``NBDServer/shutdown()`` began: no new connections.
        public static let shutdownBegan = Kind(rawValue: "shutdown-began")
        /// ``NBDServer/shutdown()`` finished: every connection ended and the backend was shut down.
        public static let shutdownFinished = Kind(rawValue: "shutdown-finished")
        /// A connection waits for ``ServerConfiguration/payloadMemoryBudget``: it stopped reading
        /// requests until other connections' large payloads are freed (metadata `connection`,
        /// `bytes`: what it waits for, `budget`, `charged`: what is in use). Reported at most once
        /// a second per server, at ``Level/info``.
        public static let payloadBudgetWait = Kind(rawValue: "payload-budget-wait")
        /// Anything else (debug detail that has no kind of its own).
        public static let message = Kind(rawValue: "message")
    }

    /// What happened.
    public var kind: Kind
    /// How much it matters.
    public var level: Level
    /// A sentence for people, without the `connection N:` prefix the string loggers add.
    public var message: String
    /// Facts for machines: `connection` (the connection's ID), `export`, `errno` (`EIO`, ...),
    /// `command`, `offset`, `length`, `address`, `connections`, `reason`, as each kind documents.
    public var metadata: [String: String]

    /// Creates an event.
    public init(kind: Kind, level: Level, message: String, metadata: [String: String] = [:]) {
        self.kind = kind
        self.level = level
        self.message = message
        self.metadata = metadata
    }

    /// The connection the event is about, if any.
    public var connectionID: UInt64? { metadata["connection"].flatMap { UInt64($0) } }

    /// The text the string loggers get: the message, after `connection N: ` when the event is about
    /// a connection.
    public var text: String {
        if let connection = metadata["connection"] { return "connection \(connection): \(message)" }
        return message
    }
}

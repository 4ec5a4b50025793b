#if canImport(Glibc)
    import Glibc
#endif

/// Where `nbd-serve` sends its error messages, and its debug messages with `-v`: nbdkit's `--log`.
package enum LogDestination: Sendable, Hashable {
    /// `--log=stderr`, the default: standard error, one line per message.
    case standardError
    /// `--log=syslog`: the system log (`LOG_DAEMON`; errors at `LOG_ERR`, debug at `LOG_DEBUG`).
    case syslog
    /// `--log=null`: nowhere (not recommended: a client refused for a reason leaves no trace).
    case null
    /// `--log=/PATH`: appended to the file (an absolute path), one line per message.
    case file(path: String)

    /// Parses `--log`'s value: `stderr`, `syslog`, `null`, `default` (standard error, as nbd-serve
    /// never forks into the background), or an absolute path.
    package static func parse(_ text: String) throws(CommandLineError) -> LogDestination {
        switch text {
        case "stderr", "default": return .standardError
        case "syslog": return .syslog
        case "null": return .null
        case _ where text.hasPrefix("/"): return .file(path: text)
        default:
            throw CommandLineError("--log=\(text): use stderr, syslog, null, default or an absolute path to append to")
        }
    }

    /// Where each kind of message goes: closures that take the message without a prefix; `debug` is
    /// nil unless `verbose`, and `error` is an empty sink for `null`. `write` prints a line to standard
    /// error (the executable's own writer). A log file is opened (created, mode 0644 before the umask,
    /// appended to) here, so a bad path fails at start.
    package func sinks(
        verbose: Bool, write: @escaping @Sendable (String) -> Void
    ) throws(CommandLineError) -> (error: @Sendable (String) -> Void, debug: (@Sendable (String) -> Void)?) {
        let errorPrefix = "nbd-serve: error: "
        let debugPrefix = "nbd-serve: debug: "
        switch self {
        case .standardError:
            func sink(_ prefix: String) -> @Sendable (String) -> Void {
                { message in write(prefix + message) }
            }
            return (sink(errorPrefix), verbose ? sink(debugPrefix) : nil)
        case .syslog:
            _ = LogDestination.systemLogOpened
            func sink(_ priority: Int32) -> @Sendable (String) -> Void {
                { message in
                    // syslog(3) is variadic; vsyslog takes the one "%s" argument as a va_list.
                    withVaList([message]) { arguments in vsyslog(priority, "%s", arguments) }
                }
            }
            return (sink(LOG_ERR), verbose ? sink(LOG_DEBUG) : nil)
        case .null:
            return ({ _ in }, nil)
        case .file(let path):
            let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw CommandLineError("--log=\(path): cannot open the log file: \(String(cString: strerror(errno)))")
            }
            // One write(2) per line on an O_APPEND descriptor: lines from different threads never
            // interleave. The descriptor stays open for the life of the process.
            func sink(_ prefix: String) -> @Sendable (String) -> Void {
                { message in
                    var line = Array((prefix + message + "\n").utf8)
                    _ = line.withUnsafeMutableBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                }
            }
            return (sink(errorPrefix), verbose ? sink(debugPrefix) : nil)
        }
    }

    /// Opens the system log once, as `nbd-serve` with its pid. openlog(3) keeps the name's pointer,
    /// so it gets a copy that lives as long as the process.
    private static let systemLogOpened: Bool = {
        openlog(strdup("nbd-serve"), LOG_PID, LOG_DAEMON)
        return true
    }()
}

#if canImport(Glibc)
    import Glibc
#endif

/// Where `nbd-serve` sends its error messages, and its debug messages with `-v`: nbdkit's `--log`.
package enum LogDestination: String, Sendable, Hashable {
    /// `--log=stderr`, the default: standard error, one line per message.
    case standardError = "stderr"
    /// `--log=syslog`: the system log (`LOG_DAEMON`; errors at `LOG_ERR`, debug at `LOG_DEBUG`).
    case syslog
    /// `--log=null`: nowhere (not recommended: a client refused for a reason leaves no trace).
    case null

    /// Where one kind of message goes: a closure that takes the message without a prefix, or `nil`
    /// for `null`. `write` prints a line to standard error (the executable's own writer).
    package func sink(
        isError: Bool, prefix: String, write: @escaping @Sendable (String) -> Void
    ) -> (@Sendable (String) -> Void)? {
        switch self {
        case .standardError:
            return { message in write(prefix + message) }
        case .syslog:
            _ = LogDestination.systemLogOpened
            let priority = isError ? LOG_ERR : LOG_DEBUG
            return { message in
                // syslog(3) is variadic; vsyslog takes the one "%s" argument as a va_list.
                withVaList([message]) { arguments in vsyslog(priority, "%s", arguments) }
            }
        case .null:
            return nil
        }
    }

    /// Opens the system log once, as `nbd-serve` with its pid. openlog(3) keeps the name's pointer,
    /// so it gets a copy that lives as long as the process.
    private static let systemLogOpened: Bool = {
        openlog(strdup("nbd-serve"), LOG_PID, LOG_DAEMON)
        return true
    }()
}

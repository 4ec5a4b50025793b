import NBDServer

/// The command-line options that set the server itself (beyond TLS, see ``TLSSetup``).
package enum ServerSettings {
    /// Applies `-t`/`--threads`, `--no-sr`, `--no-meta-contexts`, `--no-extended-headers`, `--timeout`, `--keepalive` and
    /// `--memory-budget` to `configuration`.
    ///
    /// nbdkit's `-t N` is the number of threads per connection, so at most N requests of a
    /// connection are in progress at once; `-t 1` serializes them, replies in order. `nbd-serve`
    /// serves fast requests on the connection's thread anyway, so N bounds its slow and suspending
    /// requests in flight (``ServerConfiguration/maximumSlowRequestsPerConnection``), and 1 serves
    /// every request in order on that thread (``ServerConfiguration/servesRequestsInOrder``).
    package static func configure(_ configuration: inout ServerConfiguration, from options: ServeOptions) {
        if let threads = options.threads {
            configuration.maximumSlowRequestsPerConnection = threads
            configuration.servesRequestsInOrder = threads == 1
        }
        configuration.offersStructuredReplies = options.offersStructuredReplies
        configuration.offersMetaContexts = options.offersMetaContexts
        configuration.offersExtendedHeaders = options.offersExtendedHeaders
        configuration.negotiationTimeout = options.negotiationTimeout
        configuration.enablesTCPKeepAlive = options.enablesKeepAlive
        if let budget = options.memoryBudget {
            configuration.payloadMemoryBudget = budget == 0 ? nil : budget
        }
    }
}

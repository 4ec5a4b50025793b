import NBDCore

/// The retry-request filter's parameters, with nbdkit's defaults: 2 retries, 2 seconds apart, and
/// opening the layer below retried like any request.
public struct RetryRequestConfiguration: Sendable, Hashable {
    /// `retry-request-retries`: how many times one request is retried before its error reaches the
    /// client.
    public var retries: Int
    /// `retry-request-delay`: the wait before each retry (not growing). Never zero.
    public var delay: Duration
    /// `retry-request-open`: whether opening the layer below is retried too.
    public var retriesOpen: Bool

    /// Creates a configuration; throws if `delay` is zero or `retries` negative, naming the parameter.
    public init(retries: Int = 2, delay: Duration = .seconds(2), retriesOpen: Bool = true) throws(NBDError) {
        guard retries >= 0 else {
            throw NBDError(.invalidArgument, "retry-request-retries=\(retries): must not be negative")
        }
        guard delay > .zero else { throw NBDError(.invalidArgument, "retry-request-delay cannot be 0") }
        self.retries = retries
        self.delay = delay
        self.retriesOpen = retriesOpen
    }
}

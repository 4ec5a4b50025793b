import NBDCore

/// The retry filter's parameters, with nbdkit's defaults: 5 retries, 2 seconds before the first,
/// doubling each time (about a minute in all), the same read/write mode after a failure.
public struct RetryConfiguration: Sendable, Hashable {
    /// `retries`: how many times one request is retried before its error reaches the client. 0
    /// turns the filter into a pass-through.
    public var retries: Int
    /// `retry-delay`: the wait before the first retry. Never zero.
    public var delay: Duration
    /// `retry-exponential`: whether the wait doubles after each retry.
    public var isExponential: Bool
    /// `retry-readonly`: whether the layer below is reopened read-only after the first failure, so
    /// writes, zeroes and trims fail with `EPERM` for the rest of the connection.
    public var reopensReadOnly: Bool

    /// Creates a configuration; throws if `delay` is zero or `retries` negative, naming the parameter.
    public init(
        retries: Int = 5, delay: Duration = .seconds(2), isExponential: Bool = true, reopensReadOnly: Bool = false
    ) throws(NBDError) {
        guard retries >= 0 else { throw NBDError(.invalidArgument, "retries=\(retries): must not be negative") }
        guard delay > .zero else { throw NBDError(.invalidArgument, "retry-delay cannot be 0") }
        self.retries = retries
        self.delay = delay
        self.isExponential = isExponential
        self.reopensReadOnly = reopensReadOnly
    }

    /// The wait before retry number `retry` (1 for the first): ``delay``, doubled for each earlier
    /// retry when ``isExponential``.
    public func delay(before retry: Int) -> Duration {
        guard isExponential, retry > 1 else { return delay }
        return delay * (1 << min(retry - 1, 40))
    }
}

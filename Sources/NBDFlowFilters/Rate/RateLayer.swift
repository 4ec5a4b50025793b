import NBDCore

/// The rate filter as a run-time `FilterLayer`, built from nbdkit's parameters:
/// `nbd-serve --filter=rate memory 64M rate=1M connection-rate=50K`.
///
/// Rates are in bits per second and use nbdkit's size syntax, so `1M` is 1,048,576 bits per second
/// (powers of 1024, as nbdkit parses them).
public struct RateLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The limit shared by every connection, or `nil`.
    public let shared: RateLimiter?
    /// Each connection's limit in bits per second, or `nil`.
    public let connectionRate: UInt64?
    /// The file each connection's rate is re-read from, or `nil`.
    public let connectionRateFile: String?
    /// Seconds of rate a bucket holds.
    public let burstiness: Double

    /// Creates the layer. A rate of `nil` with no file is no limit.
    public init(
        rate: UInt64? = nil, connectionRate: UInt64? = nil, burstiness: Double = 2.0, rateFile: String? = nil,
        connectionRateFile: String? = nil
    ) {
        self.shared =
            rate != nil || rateFile != nil
            ? RateLimiter(bitsPerSecond: rate ?? 0, burstiness: burstiness, rateFile: rateFile) : nil
        self.connectionRate = connectionRate
        self.connectionRateFile = connectionRateFile
        self.burstiness = burstiness
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let own =
            connectionRate != nil || connectionRateFile != nil
            ? RateLimiter(bitsPerSecond: connectionRate ?? 0, burstiness: burstiness, rateFile: connectionRateFile)
            : nil
        return AnyBlockBackend(RateFilter(wrapping: next, shared: shared, connection: own))
    }
}

extension RateLayer: ConfigurableFilterLayer {
    public static var filterName: String { "rate" }
    public static var summary: String {
        "limit read and write bandwidth, in total and per connection (bits per second)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "rate", "total bandwidth of all connections in bits per second, such as 1M (= 1048576)"),
            ParameterDescription("connection-rate", "bandwidth of each connection in bits per second, such as 50K"),
            ParameterDescription(
                "rate-file", "a file whose first line sets the total rate, re-read at most once a second"),
            ParameterDescription(
                "connection-rate-file",
                "a file whose first line sets the per-connection rate, re-read at most once a second"),
            ParameterDescription(
                "burstiness", "seconds of bandwidth a client may burst after being idle", default: "2.0"),
        ]
    }

    /// Creates the layer from `rate`, `connection-rate`, `rate-file`, `connection-rate-file` and
    /// `burstiness`. As in nbdkit, a rate of 0 is refused (leave it out for no limit).
    public init(parameters: ParameterValues) throws(NBDError) {
        func rate(_ key: String) throws(NBDError) -> UInt64? {
            guard let value = try parameters.size(key) else { return nil }
            guard value > 0 else {
                throw NBDError(.invalidArgument, "\(key)=0: a rate cannot be 0; leave \(key) out for no limit")
            }
            return value
        }
        var burstiness = 2.0
        if let text = parameters["burstiness"] {
            guard let value = Double(text), value.isFinite, value > 0 else {
                throw NBDError(
                    .invalidArgument, "burstiness=\(text): expected a number of seconds above 0, such as 2.0")
            }
            burstiness = value
        }
        for key in ["rate-file", "connection-rate-file"] {
            if let path = parameters[key], path.isEmpty {
                throw NBDError(.invalidArgument, "\(key)=: expected the path of a file")
            }
        }
        self.init(
            rate: try rate("rate"), connectionRate: try rate("connection-rate"), burstiness: burstiness,
            rateFile: parameters["rate-file"], connectionRateFile: parameters["connection-rate-file"])
    }
}

import NBDCore

/// The error filter as a run-time layer, configured with nbdkit's parameters: `error`, `error-rate`,
/// `error-file`, and the same three with an operation in the middle (`error-pwrite-rate=100%`).
///
/// Beyond nbdkit 1.32, `error-flush`, `error-flush-rate` and `error-flush-file` inject errors into
/// flushes, which is how a failing flush in a multi-conn fan-out is tested.
public struct ErrorInjectionLayer: ConfigurableFilterLayer {
    /// The policy per operation that every connection's filter applies.
    public let policies: ErrorInjectionPolicies
    public var name: String { Self.filterName }

    /// Creates the layer from explicit policies.
    public init(policies: ErrorInjectionPolicies) {
        self.policies = policies
    }

    public static var filterName: String { "error" }
    public static var summary: String { "inject errors into requests, to test clients" }

    /// The operation names in parameter keys, with the policy each one sets.
    private static var operations: [(String, WritableKeyPath<ErrorInjectionPolicies, ErrorInjectionPolicy>)] {
        [
            ("pread", \.read), ("pwrite", \.write), ("trim", \.trim), ("zero", \.zero), ("extents", \.extents),
            ("cache", \.cache), ("flush", \.flush),
        ]
    }

    public static var parameters: [ParameterDescription] {
        var list = [
            ParameterDescription(
                "error", "EPERM, EIO, ENOMEM, EINVAL, ENOSPC or ESHUTDOWN: the error to inject", default: "EIO"),
            ParameterDescription("error-rate", "N% or 0..1: the share of requests that fail", default: "0%"),
            ParameterDescription("error-file", "inject errors only while this file exists"),
        ]
        for (operation, _) in operations {
            list.append(ParameterDescription("error-\(operation)", "as error=, for \(operation) requests only"))
            list.append(ParameterDescription("error-\(operation)-rate", "as error-rate=, for \(operation) requests only"))
            list.append(ParameterDescription("error-\(operation)-file", "as error-file=, for \(operation) requests only"))
        }
        return list
    }

    /// Creates the layer from nbdkit's parameters; per-operation keys override the general ones.
    public init(parameters: ParameterValues) throws(NBDError) {
        var general = ErrorInjectionPolicy()
        if let code = parameters["error"] { general.code = try ErrorInjectionPolicy.parseCode(code, for: "error") }
        if let rate = parameters["error-rate"] { general.rate = try ErrorInjectionPolicy.parseRate(rate, for: "error-rate") }
        general.triggerFile = parameters["error-file"]
        var policies = ErrorInjectionPolicies(all: general)
        for (operation, path) in Self.operations {
            if let code = parameters["error-\(operation)"] {
                policies[keyPath: path].code = try ErrorInjectionPolicy.parseCode(code, for: "error-\(operation)")
            }
            if let rate = parameters["error-\(operation)-rate"] {
                policies[keyPath: path].rate = try ErrorInjectionPolicy.parseRate(rate, for: "error-\(operation)-rate")
            }
            if let file = parameters["error-\(operation)-file"] {
                policies[keyPath: path].triggerFile = file
            }
        }
        self.init(policies: policies)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        AnyBlockBackend(ErrorInjectionFilter(wrapping: next, policies: policies))
    }
}

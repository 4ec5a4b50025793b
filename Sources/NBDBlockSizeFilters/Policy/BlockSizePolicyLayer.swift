import NBDCore

/// The blocksize-policy filter as a run-time layer:
/// `nbd-serve --filter=blocksize-policy memory 1G blocksize-minimum=4K blocksize-error-policy=error`.
public struct BlockSizePolicyLayer: ConfigurableFilterLayer {
    public var name: String { Self.filterName }
    /// The parameters every connection uses.
    public let configuration: BlockSizePolicyConfiguration

    /// Creates the layer.
    public init(configuration: BlockSizePolicyConfiguration) {
        self.configuration = configuration
    }

    public static var filterName: String { "blocksize-policy" }
    public static var summary: String {
        "advertise block size constraints and choose what happens to requests that break them"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("blocksize-minimum", "minimum block size to advertise, a power of 2 up to 64K"),
            ParameterDescription(
                "blocksize-preferred", "preferred block size to advertise, a power of 2 from 512 to 32M"),
            ParameterDescription("blocksize-maximum", "maximum request size to advertise"),
            ParameterDescription(
                "blocksize-error-policy",
                "allow (pass requests that break the constraints down), error (fail them with EINVAL) or strict-error",
                default: "allow"),
            ParameterDescription(
                "blocksize-write-disconnect", "close the connection on a write request larger than this size"),
        ]
    }

    /// Creates the layer from nbdkit's parameters (sizes up to 4G − 1).
    public init(parameters: ParameterValues) throws(NBDError) {
        func parse(_ key: String) throws(NBDError) -> UInt32? {
            guard let size = try parameters.size(key) else { return nil }
            guard size <= UInt64(UInt32.max) else {
                throw NBDError(.invalidArgument, "\(key)=\(parameters[key] ?? ""): must be at most 4294967295")
            }
            return UInt32(size)
        }
        let policy = try parameters.choice(
            "blocksize-error-policy",
            ["allow": BlockSizeErrorPolicy.allow, "error": .error, "strict-error": .strictError], default: .allow)
        self.init(
            configuration: try BlockSizePolicyConfiguration(
                minimum: parse("blocksize-minimum"), preferred: parse("blocksize-preferred"),
                maximum: parse("blocksize-maximum"), errorPolicy: policy,
                writeDisconnect: parse("blocksize-write-disconnect")))
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(try BlockSizePolicyFilter(wrapping: next, configuration: configuration))
    }
}

import NBDCore

/// nbdkit's `ones` plugin (nbdkit 1.36 and later): an export whose every byte reads as 0xff, or as
/// the byte given with `byte=`; writes are discarded.
public struct OnesBackendProvider: BackendProvider {
    public typealias Backend = OnesBackend

    /// The export size in bytes.
    public let size: UInt64
    /// The value every byte reads as.
    public let byte: UInt8

    /// Creates an export of `size` bytes, each reading as `byte`.
    ///
    /// - Throws: `NBDError.Code.invalidArgument` if `size` is larger than 2^63 - 1.
    public init(size: UInt64 = 0, byte: UInt8 = 0xff) throws(NBDError) {
        self.size = try checkedExportSize(size, backend: "ones")
        self.byte = byte
    }

    /// Opens a connection's view; read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> OnesBackend {
        OnesBackend(size: size, byte: byte, isReadOnly: connection.isReadOnly)
    }
}

extension OnesBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "ones" }
    public static var summary: String {
        "every byte reads as 0xff (or byte=), writes discarded, as nbdkit's ones plugin (ones [SIZE])"
    }
    public static var parameters: [ParameterDescription] {
        [
            GeneratedExportSize.description(required: false),
            ParameterDescription(
                "byte", "the value every byte reads as, 0 to 255 (decimal, 0x hex or 0 octal)", default: "0xff"),
        ]
    }
    public static var positionalParameter: String? { "size" }
    public static var example: String { "ones 1G" }

    /// Creates the export from `size` (default 0) and `byte` (default 0xff).
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        var byte: UInt8 = 0xff
        if let text = parameters["byte"] {
            guard let value = parseCInteger(text), value <= 255 else {
                throw NBDError(
                    .invalidArgument, "byte=\(text): expected a byte value from 0 to 255, such as 255, 0xff or 0377")
            }
            byte = UInt8(value)
        }
        try self.init(size: try GeneratedExportSize.read(parameters, backend: "ones", default: 0), byte: byte)
    }
}

import Foundation
import NBDCore

extension DataBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "data" }
    public static var summary: String {
        "a RAM disk starting with data given on the command line, as nbdkit's data plugin (data 'DATA')"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "data",
                "the contents in nbdkit's data format: bytes (1 0x1f 017), le16:/be32:/le64:... words, \"strings\", "
                    + "@OFFSET @+N @-N @^ALIGN, <FILE, <(SCRIPT), ( ... ), *N, [N:M], -> \\NAME, \\NAME, $VAR (a KEY=VALUE parameter of this command line, else the environment), # comments; "
                    + "exactly one of data, raw, base64"),
            ParameterDescription("raw", "the contents as literal text"),
            ParameterDescription("base64", "the contents in base64"),
            ParameterDescription(
                "size", "truncate or pad with zeroes to this size, e.g. 1M", default: "the data's size"),
            ParameterDescription(
                "allocator", "sparse or malloc (both served by nbd-serve's sparse memory store)", default: "sparse"),
        ]
    }
    public static var positionalParameter: String? { "data" }
    public static var example: String { "data '$pattern*256' pattern='0x55 0xAA' size=1M" }
    /// Any other `KEY=VALUE` is a variable that `data=` uses as `$KEY` (nbdkit's data plugin does
    /// the same); one that `data=` never uses is refused, so a mistyped parameter is not ignored.
    public static var acceptsUnlistedParameters: Bool { true }

    /// Creates the export from exactly one of `data`, `raw` and `base64`, and `size`; further
    /// parameters are the variables of `data`.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try Self.checkAllocator(parameters["allocator"])
        let size = try parameters.size("size")
        let listed = Set(Self.parameters.map(\.name))
        for key in listed where parameters.all(key).count > 1 {
            let values = parameters.all(key).map { "'\($0)'" }.joined(separator: ", ")
            throw NBDError(
                .invalidArgument,
                "\(key)= is given \(parameters.all(key).count) times (\(values); a plain argument after the backend is data=): give it once")
        }
        let variables = DataVariables(parameters.filter { !listed.contains($0.key) })
        let given = ["data", "raw", "base64"].filter { parameters.contains($0) }
        guard given.count == 1 else {
            throw NBDError(
                .invalidArgument,
                given.isEmpty
                    ? "give the contents with exactly one of data=..., raw=... or base64=..., for example data='1 2 3'"
                    : "give only one of data=..., raw=... or base64=... (given: \(given.joined(separator: ", ")))")
        }
        if given[0] != "data", let unused = variables.unused.first {
            throw NBDError(
                .invalidArgument, "unknown parameter \(unused)=: the data backend takes variables only with data=")
        }
        switch given[0] {
        case "raw":
            try await self.init(bytes: Array(parameters["raw"]!.utf8), size: size)
        case "base64":
            let text = parameters["base64"]!
            guard let decoded = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
                throw NBDError(.invalidArgument, "base64=\(text): not valid base64")
            }
            try await self.init(bytes: Array(decoded), size: size)
        default:
            try await self.init(data: parameters["data"]!, size: size, variable: variables.value(of:))
            if let unused = variables.unused.first {
                throw NBDError(
                    .invalidArgument,
                    "unknown parameter \(unused)=: not a parameter of the data backend, and data= does not use $\(unused)")
            }
        }
    }

    /// nbdkit's `allocator=`: `sparse` and `malloc` (with `mlock=false`) are accepted; nbd-serve
    /// serves both from its sparse memory store, which reads the same.
    static func checkAllocator(_ value: String?) throws(NBDError) {
        guard let value else { return }
        let parts = value.split(separator: ",").map(String.init)
        let accepted = "expected sparse or malloc (zstd and mlock=true are not supported by nbd-serve)"
        switch parts.first?.lowercased() {
        case "sparse" where parts.count == 1:
            return
        case "malloc":
            for option in parts.dropFirst() {
                let pair = option.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2, pair[0] == "mlock", (try? parseBoolean(pair[1], for: "mlock")) == false else {
                    throw NBDError(.invalidArgument, "allocator=\(value): \(accepted)")
                }
            }
        default:
            throw NBDError(.invalidArgument, "allocator=\(value): \(accepted)")
        }
    }
}

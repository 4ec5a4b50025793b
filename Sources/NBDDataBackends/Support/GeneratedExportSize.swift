import NBDCore

/// The `size=` parameter of the generated-data backends, read as nbdkit's plugins read theirs.
enum GeneratedExportSize {
    /// The export size from `size=`: required unless `defaultSize` is given. nbdkit 1.32 requires
    /// it only of full; its null, ones, pattern, random and sparse-random plugins serve an empty
    /// export without one, although their manuals call it required.
    static func read(
        _ parameters: ParameterValues, backend: String, default defaultSize: UInt64? = nil
    ) throws(NBDError) -> UInt64 {
        if let size = try parameters.size("size") { return size }
        if let defaultSize { return defaultSize }
        throw NBDError(.invalidArgument, "size=... is required, for example '\(backend) 1G' or '\(backend) size=1G'")
    }

    /// The `size` parameter's description for `--help`.
    static func description(required: Bool) -> ParameterDescription {
        ParameterDescription(
            "size", "the export size, e.g. 1G; suffixes K M G T P E", default: required ? nil : "0",
            required: required)
    }
}

/// `size` if the NBD protocol can describe it (at most 2^63 - 1 bytes), otherwise an error naming
/// the backend.
func checkedExportSize(_ size: UInt64, backend: String) throws(NBDError) -> UInt64 {
    guard size <= UInt64(Int64.max) else {
        throw NBDError(
            .invalidArgument,
            "\(backend) export size \(size) is larger than the NBD maximum of \(Int64.max) bytes (2^63 - 1)")
    }
    return size
}

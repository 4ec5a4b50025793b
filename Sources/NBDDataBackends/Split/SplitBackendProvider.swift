import Glibc
import NBDBackends
import NBDCore

/// nbdkit's `split` plugin: several files served end to end as one export, in the order given.
///
/// Each file is opened once, when the provider is created, and its size then is its share of the
/// export; the files must not change size while served. Reads and writes that cross a boundary are
/// split between the files.
///
/// ```swift
/// let export = try SplitBackendProvider(paths: ["disk.img.001", "disk.img.002"])
/// ```
public struct SplitBackendProvider: BackendProvider {
    public typealias Backend = SplitBackend

    /// One file and where it starts in the export.
    struct Part<File: Sendable>: Sendable {
        var start: UInt64
        var size: UInt64
        var backend: File
    }

    let files: [Part<FileBackendProvider>]
    /// The paths, in export order.
    public let paths: [String]
    /// The export size: the sum of the files' sizes.
    public let size: UInt64
    /// Whether the files were opened read-only.
    public let isReadOnly: Bool

    /// Opens `paths` (regular files), for reading only when `readOnly`.
    ///
    /// No paths make an empty export, as nbdkit 1.32 serves one.
    ///
    /// - Throws: `NBDError.Code.invalidArgument` for a path that is not a regular file, or the error
    ///   of the `open` that failed, naming the path.
    public init(paths: [String], readOnly: Bool = false) throws(NBDError) {
        var files: [Part<FileBackendProvider>] = []
        var offset: UInt64 = 0
        for path in paths {
            var status = stat()
            guard stat(path, &status) == 0 else { throw NBDError(errno: errno, "file=\(path): cannot open") }
            guard status.st_mode & S_IFMT == S_IFREG else {
                throw NBDError(
                    .invalidArgument, "file=\(path): not a regular file (the split backend serves regular files only)")
            }
            let file = try FileBackendProvider(path: path, readOnly: readOnly)
            if file.size > 0 {
                files.append(Part(start: offset, size: file.size, backend: file))
            }
            let (end, overflow) = offset.addingReportingOverflow(file.size)
            guard !overflow, end <= UInt64(Int64.max) else {
                throw NBDError(.invalidArgument, "the files together are larger than 2^63 - 1 bytes")
            }
            offset = end
        }
        self.files = files
        self.paths = paths
        self.size = offset
        self.isReadOnly = readOnly
    }

    /// The index of the part holding `offset`.
    static func partIndex<File>(containing offset: UInt64, in parts: [Part<File>]) -> Int {
        var low = 0
        var high = parts.count
        while low < high {
            let middle = (low + high) / 2
            if parts[middle].start + parts[middle].size <= offset { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Opens a connection's view of the files; read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> SplitBackend {
        var parts: [Part<FileBackend>] = []
        for file in files {
            parts.append(Part(start: file.start, size: file.size, backend: try await file.backend.open(connection)))
        }
        return SplitBackend(parts: parts, size: size, isReadOnly: connection.isReadOnly || isReadOnly)
    }
}

extension SplitBackendProvider: ConfigurableBackendProvider {
    public static var backendName: String { "split" }
    public static var summary: String {
        "regular files joined end to end, as nbdkit's split plugin (split FILE FILE ...)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "file", "a file to serve; the files are joined in the order given (none: an empty export)",
                repeatable: true)
        ]
    }
    public static var positionalParameter: String? { "file" }
    public static var example: String { "split disk.001 disk.002" }

    /// Opens every `file=`, read-only when the export is.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        try self.init(paths: parameters.all("file"), readOnly: options.isReadOnly)
    }
}

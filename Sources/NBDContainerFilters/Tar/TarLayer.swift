import NBDCore
import NBDRangeFilters

/// nbdkit's tar filter as a run-time `FilterLayer`:
/// `nbd-serve --filter=tar file archive.tar tar-entry=disk.img`.
///
/// Serves one file of an uncompressed tar archive as the export, reads and writes in place (writes
/// change the archive; serve with `-r` to keep it unchanged). The entry cannot grow or shrink.
///
/// nbdkit runs GNU tar to find the entry; this filter reads the archive's headers itself (v7, ustar,
/// GNU long names and base-256 sizes, pax `path`/`size` records), checking each one, so it needs no
/// `tar` program. Each connection looks the entry up again when it opens, reading only headers.
public struct TarLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The name of the file inside the archive, exactly as `tar tf` lists it.
    public let entry: String
    /// How far into the archive the search for ``entry`` may read, or 0 for no limit.
    public let limit: UInt64

    /// Creates the layer; `limit` 0 (nbdkit's default) searches the whole archive.
    public init(entry: String, limit: UInt64 = 0) {
        self.entry = entry
        self.limit = limit
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let found = try await TarEntry.find(entry, in: next, limit: limit)
        return AnyBlockBackend(try OffsetFilter(wrapping: next, offset: found.offset, range: found.size))
    }
}

extension TarLayer: ConfigurableFilterLayer {
    public static var filterName: String { "tar" }
    public static var summary: String {
        "serve one file inside an uncompressed tar archive below, read and written in place"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "tar-entry", "the file inside the archive, exactly as 'tar tf' lists it", required: true),
            ParameterDescription(
                "tar-limit", "give up when the entry is not found in this many bytes of the archive (0: no limit)",
                default: "0"),
            ParameterDescription(
                "tar", "accepted for nbdkit compatibility and ignored: the archive is read without running tar"),
        ]
    }

    /// Creates the layer from `tar-entry` (required) and `tar-limit` (a size).
    public init(parameters: ParameterValues) throws(NBDError) {
        let entry = try parameters.required("tar-entry", example: "disk.img")
        guard !entry.isEmpty else {
            throw NBDError(.invalidArgument, "tar-entry=: the name of the file inside the archive is empty")
        }
        self.init(entry: entry, limit: try parameters.size("tar-limit", default: 0))
    }
}

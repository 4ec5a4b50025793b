import NBDCore

/// nbdkit's ext2 filter as a run-time `FilterLayer`:
/// `nbd-serve --filter=ext2 file fs.img ext2file=/disk.img`.
///
/// Serves one regular file inside the ext2, ext3 or ext4 filesystem image below, read and written
/// in place (serve with `-r` to keep the image unchanged); the export's size is the file's. With
/// `ext2file=exportname` the client's export name picks the file.
///
/// libext2fs (Debian package `libext2fs2`) is loaded at run time and reads the image through the
/// layer below. It opens the filesystem once, for the first connection, over a layer below opened
/// for that purpose, and maps each served file's blocks once; reads, and writes to blocks the file
/// already has, then go straight to the image below. Writes into holes go through libext2fs,
/// which allocates blocks; a flush writes the filesystem's changed metadata, then flushes below.
public struct Ext2Layer: FilterLayer {
    public var name: String { Self.filterName }
    /// The absolute path of the file inside the filesystem, or `nil` when the client's export name
    /// picks it (`ext2file=exportname`; a name without a leading `/` is taken from the root).
    public let path: String?
    private let library: LibExt2fs
    private let shared = Ext2SharedFilesystem()

    /// Creates the layer serving the file at `path` (absolute), or the file the export name names
    /// when `path` is `nil`.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when `path` is not absolute; (`ENOTSUP`) when libext2fs is
    ///   not installed, naming the Debian package that provides it.
    public init(path: String?) throws(NBDError) {
        if let path, !path.hasPrefix("/") {
            throw NBDError(
                .invalidArgument,
                "ext2file=\(path): must be 'exportname' or an absolute path inside the filesystem, such as /\(path)")
        }
        self.path = path
        library = try LibExt2fs.shared.get()
    }

    /// The absolute path this connection serves.
    private func path(for connection: ConnectionInfo) throws(NBDError) -> String {
        if let path { return path }
        let name = connection.exportName
        guard !name.isEmpty else {
            throw NBDError(
                .invalidArgument, "ext2: ext2file=exportname: the client asked for no export name, so no file is named")
        }
        return name.hasPrefix("/") ? name : "/" + name
    }

    /// Serves this connection from the filesystem shared by all connections.
    public func open(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow) async throws(NBDError)
        -> AnyBlockBackend
    {
        let path = try path(for: connection)
        let filesystem = try await shared.filesystem(for: connection, below: openBelow, library: library)
        let file = try await filesystem.file(at: path)
        return AnyBlockBackend(
            Ext2FileBackend(filesystem: filesystem, file: file, readOnly: connection.isReadOnly, ownsFilesystem: false))
    }

    /// Serves the connection from a filesystem opened over `next` for it alone, closed with it
    /// (for embedders that build a chain by hand; `nbd-serve` shares one filesystem, see ``open(for:below:)``).
    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let path = try path(for: connection)
        let filesystem = try await Ext2Filesystem.open(next, writable: !connection.isReadOnly, library: library)
        do {
            let file = try await filesystem.file(at: path)
            return AnyBlockBackend(
                Ext2FileBackend(
                    filesystem: filesystem, file: file, readOnly: connection.isReadOnly, ownsFilesystem: true))
        } catch {
            // Closes the filesystem without closing `next`, which the caller of wrap closes.
            await filesystem.closeFilesystemOnly()
            throw error
        }
    }

    /// Writes the shared filesystem's metadata and closes it and the layer below it.
    public func shutdown() async {
        await shared.close()
    }
}

extension Ext2Layer: ConfigurableFilterLayer {
    public static var filterName: String { "ext2" }
    public static var summary: String {
        "serve one file inside an ext2, ext3 or ext4 filesystem image below, read and written in place (libext2fs)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "ext2file",
                "the absolute path of the file inside the filesystem, or 'exportname' to let the client's export name pick it",
                required: true)
        ]
    }

    /// Creates the layer from `ext2file` (an absolute path, or `exportname`).
    public init(parameters: ParameterValues) throws(NBDError) {
        let file = try parameters.required("ext2file", example: "/disk.img")
        try self.init(path: file == "exportname" ? nil : file)
    }
}

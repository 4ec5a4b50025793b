import NBDCore

/// An export backed by a regular file or a block device, like nbdkit's `file` plugin.
///
/// The file is opened once, when the provider is created, and every connection shares the
/// descriptor and with it the OS page cache. A flush on any connection therefore makes every
/// connection's completed writes durable, so the export advertises multi-conn.
///
/// The export size is the file's size (or the device's) when it was opened; the file is never
/// grown or shrunk. The descriptor is closed when the provider and every backend it opened are gone.
///
/// ```swift
/// let export = try FileBackendProvider(path: "/var/lib/disks/vm1.img")
/// let readOnlyExport = try FileBackendProvider(path: "/dev/sdb", readOnly: true)
/// ```
public struct FileBackendProvider: BackendProvider {
    public typealias Backend = FileBackend

    let store: FileStore

    /// Opens `path` (a regular file or a block device) for reading and, unless `readOnly`, writing.
    ///
    /// - Throws: an `NBDError` mapped from the `open` or `fstat` error, with a message such as
    ///   `cannot open /tmp/x.img: No such file or directory`; or `NBDError.Code.invalidArgument` if
    ///   `path` is neither a regular file nor a block device.
    public init(path: String, readOnly: Bool = false) throws(NBDError) {
        store = try FileStore(path: path, readOnly: readOnly)
    }

    /// The path the export was opened from.
    public var path: String { store.path }

    /// The export size in bytes: the file's size when it was opened.
    public var size: UInt64 { store.size }

    /// Whether the file was opened read-only.
    public var isReadOnly: Bool { store.isReadOnly }

    /// Whether the path is a block device rather than a regular file.
    public var isBlockDevice: Bool { store.isBlockDevice }

    /// Opens a connection's view of the shared file. Read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> FileBackend {
        FileBackend(store: store, isReadOnly: connection.isReadOnly)
    }
}

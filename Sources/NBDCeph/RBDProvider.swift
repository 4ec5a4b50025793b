import NBDCore

/// An export served from a Ceph RBD image through librbd, which is loaded at run time
/// (`librbd.so.1`, Debian package `librbd1`).
///
/// ```swift
/// let provider = try await RBDProvider(
///     spec: try RBDImageSpec("rbd/disk"),
///     configuration: RBDClientConfiguration(confPath: "/etc/ceph/ceph.conf"))
/// let server = NBDServer(provider: provider)
/// ```
///
/// - The cluster connection (`rados_t`) and pool are opened once, at start; so is the image, which
///   checks that it exists. With ``RBDHandleMode/shared`` that handle serves every client; with
///   ``RBDHandleMode/perConnection`` each client connection opens its own.
/// - Capabilities: the image's size, flush, FUA (a write followed by a flush), trim (discard),
///   write zeroes when librbd has it, no fast zero, block status from the object map where the
///   image has fast-diff (whole objects; otherwise every range is data), and
///   multi-conn only when every connection sees every other's flushed writes: a shared handle, or
///   handles without librbd's writeback cache. Per-connection cached handles each keep writes the
///   others cannot see until *that* handle flushes; put `--filter=multi-conn` over them.
/// - A snapshot (`IMAGE@SNAP`) is served read-only. librbd's errors map to NBD errors: `EROFS` and
///   refused access to `EPERM`, a full cluster to `ENOSPC`, timeouts and everything else to `EIO`.
public struct RBDProvider: BackendProvider {
    /// The image served.
    public let spec: RBDImageSpec
    /// How the cluster is reached.
    public let configuration: RBDClientConfiguration
    /// Whether connections share one image handle.
    public let handles: RBDHandleMode
    /// Whether the export is read-only (asked for, or a snapshot).
    public let isReadOnly: Bool
    private let cluster: RBDCluster
    private let sharedImage: RBDImage?

    /// The handle mode when none is given: one shared handle (see Documentation/Ceph.md for the
    /// measurements behind it).
    public static let defaultHandles = RBDHandleMode.shared

    /// Connects to the cluster and opens the image, which must exist, all within the configured
    /// timeout.
    ///
    /// - Throws: `NBDError` naming what was not found or not reachable: librbd itself (and the
    ///   Debian package to install), the conf file, the monitors, the pool, the image or snapshot.
    public init(
        spec: RBDImageSpec, configuration: RBDClientConfiguration = RBDClientConfiguration(),
        handles: RBDHandleMode = RBDProvider.defaultHandles, isReadOnly: Bool = false
    ) async throws(NBDError) {
        self.spec = spec
        self.configuration = configuration
        self.handles = handles
        cluster = try await RBDCluster.connect(configuration, pool: spec.pool, namespace: spec.namespace)
        let image = try await RBDImage.open(cluster, spec, readOnly: isReadOnly)
        self.isReadOnly = image.isReadOnly
        if handles == .shared {
            sharedImage = image
        } else {
            // Opened only to refuse a missing image at start rather than at each client's open.
            await image.close()
            sharedImage = nil
        }
    }

    /// Whether ``shutdown()`` has disconnected from the cluster.
    package var isDisconnected: Bool { cluster.hasShutDown }

    /// Whether connections may be told that a flush on one is visible on all (`CAN_MULTI_CONN`).
    public var canMultiConn: Bool { handles == .shared || !configuration.cache }

    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> RBDBackend {
        guard !cluster.hasShutDown else {
            throw NBDError(.shutdown, "rbd: \(spec) is no longer served: the export was shut down")
        }
        let image: RBDImage
        if let sharedImage {
            image = sharedImage
        } else {
            image = try await RBDImage.open(cluster, spec, readOnly: isReadOnly || connection.isReadOnly)
        }
        var capabilities = Capabilities(
            size: try image.size(), isWritable: !image.isReadOnly, canFlush: true, fua: .native, canTrim: true,
            canZero: image.canWriteZeroes, canFastZero: false, canExtents: image.hasFastDiff,
            canMultiConn: canMultiConn,
            suspendingOperations: .all)
        if image.isReadOnly || connection.isReadOnly { capabilities = capabilities.readOnly }
        return RBDBackend(image: image, ownsImage: sharedImage == nil, capabilities: capabilities)
    }

    /// Closes the shared handle, writing its cache back, then disconnects from the cluster (the
    /// server calls this after every connection's handle was closed).
    public func shutdown() async {
        await sharedImage?.close()
        cluster.shutdown()
    }
}

import Dispatch
import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A connection to a Ceph cluster (`rados_t`) and an I/O context on one pool and namespace
/// (`rados_ioctx_t`): what every image handle of an export shares. librados' handles are safe to
/// use from any thread, hence `@unchecked Sendable`.
final class RBDCluster: @unchecked Sendable {
    let library: Librbd
    let configuration: RBDClientConfiguration
    /// The pool and namespace, as in error messages (`rbd` or `rbd/tenant`).
    let poolDescription: String
    private let rados: Librbd.Handle
    /// The I/O context on the pool and namespace.
    let ioContext: Librbd.Handle
    /// Whether ``refreshOSDMap()`` is fetching a map (one fetch at a time).
    private let refreshing = Atomic<Bool>(false)
    /// Whether ``shutdown()`` (or deinit) has destroyed the handles.
    private let isShutDown = Atomic<Bool>(false)

    private init(
        library: Librbd, configuration: RBDClientConfiguration, poolDescription: String, rados: Librbd.Handle,
        ioContext: Librbd.Handle
    ) {
        self.library = library
        self.configuration = configuration
        self.poolDescription = poolDescription
        self.rados = rados
        self.ioContext = ioContext
    }

    /// After a request timed out: fetches the newest OSD map from the monitors, in the background.
    ///
    /// librados sends a request to the address its OSD map gives for the OSD. An OSD that crashed
    /// and started again listens on a new address, and the monitors publish a map with it; a client
    /// whose image handle has a watch on the image header learns of it when that watch fails, but
    /// a read-only handle (a snapshot, `nbd-serve -r`) has none and was seen here to keep sending
    /// to the dead address, every request timing out, long after the OSD was back. Fetching the map
    /// after each timeout lets the next request (a client's, or `--filter=retry`'s) reach the OSD.
    func refreshOSDMap() {
        guard let wait = library.radosWaitForLatestOSDMap,
            refreshing.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        // The closure holds the cluster, so rados_shutdown (in deinit) cannot run during the fetch,
        // which the monitor op timeout bounds.
        DispatchQueue.global().async {
            _ = wait(self.rados)
            self.refreshing.store(false, ordering: .releasing)
        }
    }

    /// Destroys the I/O context and disconnects from the cluster, which ends librados' threads.
    /// Call it once no image handle is open any more. Without it the cluster is released when the
    /// last reference goes, which for an export served until the process exits is never: librados'
    /// threads then still run while the process exits, which ThreadSanitizer's exit-time checks
    /// were seen to crash on (nbd-serve under TSan ended with SIGSEGV after serving correctly).
    /// Skipped while ``refreshOSDMap()`` is fetching (deinit then does it, after the fetch).
    func shutdown() {
        guard !refreshing.load(ordering: .acquiring) else { return }
        release()
    }

    /// Whether ``shutdown()`` (or deinit) has destroyed the handles.
    var hasShutDown: Bool { isShutDown.load(ordering: .acquiring) }

    private func release() {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        library.radosIoctxDestroy(ioContext)
        library.radosShutdown(rados)
    }

    deinit {
        release()
    }

    /// Reads the configuration, connects to the monitors and opens the spec's pool and namespace,
    /// on a Dispatch thread (each step blocks, for at most the timeout).
    ///
    /// - Throws: `NBDError` naming what failed: the library, the conf file, the monitors, the pool.
    static func connect(_ configuration: RBDClientConfiguration, pool: String, namespace: String) async throws(NBDError)
        -> RBDCluster
    {
        let library = try Librbd.load()
        let result = await BlockingCall.run { () -> Result<RBDCluster, NBDError> in
            do throws(NBDError) {
                return .success(try connectBlocking(library, configuration, pool: pool, namespace: namespace))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private static func connectBlocking(
        _ library: Librbd, _ configuration: RBDClientConfiguration, pool: String, namespace: String
    ) throws(NBDError) -> RBDCluster {
        var created: Librbd.Handle?
        let status = library.radosCreate(&created, configuration.user)
        guard status == 0, let rados = created else {
            throw NBDError(rbdResult: Int(status), "creating a librados client for user=\(configuration.user)")
        }
        var connected = false
        defer { if !connected { library.radosShutdown(rados) } }
        try readConfiguration(library, rados, configuration)
        let seconds = try timeoutSeconds(library, rados, configuration)
        let connectStatus = library.radosConnect(rados)
        guard connectStatus == 0 else {
            let monitors = get(library, rados, "mon_host") ?? ""
            throw NBDError(
                connectStatus == -EPERM || connectStatus == -EACCES ? .notPermitted : .ioError,
                "rbd: cannot connect to the Ceph monitors (mon_host = \(monitors.isEmpty ? "not set" : monitors)) as client.\(configuration.user) within \(seconds) s: \(rbdErrnoText(Int(connectStatus)))"
            )
        }
        var context: Librbd.Handle?
        let poolStatus = library.radosIoctxCreate(rados, pool, &context)
        guard poolStatus == 0, let ioContext = context else {
            if poolStatus == -ENOENT {
                throw NBDError(
                    .invalidArgument,
                    "rbd: pool '\(pool)' not found (create it with: ceph osd pool create \(pool) && rbd pool init \(pool))"
                )
            }
            throw NBDError(rbdResult: Int(poolStatus), "opening pool '\(pool)'")
        }
        if !namespace.isEmpty { library.radosIoctxSetNamespace(ioContext, namespace) }
        connected = true
        return RBDCluster(
            library: library, configuration: configuration,
            poolDescription: namespace.isEmpty ? pool : pool + "/" + namespace, rados: rados, ioContext: ioContext)
    }

    /// Reads ceph.conf (the given one or librados' search) and applies the keyring and cache settings.
    private static func readConfiguration(
        _ library: Librbd, _ rados: Librbd.Handle, _ configuration: RBDClientConfiguration
    ) throws(NBDError) {
        let status = library.radosConfReadFile(rados, configuration.confPath)
        if status != 0 {
            if let path = configuration.confPath {
                let reason =
                    status == -EINVAL
                    ? "not a valid ceph.conf (librados also refuses a last line without a newline)"
                    : String(cString: strerror(-status))
                throw NBDError(.invalidArgument, "rbd: conf=\(path): \(reason)")
            }
            throw NBDError(
                .invalidArgument,
                "rbd: no ceph.conf found (librados looked at $CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf): give conf=PATH"
            )
        }
        if let keyring = configuration.keyring {
            guard access(keyring, R_OK) == 0 else {
                throw NBDError(.invalidArgument, "rbd: keyring=\(keyring): \(String(cString: strerror(errno)))")
            }
            try set(library, rados, "keyring", keyring)
        }
        try set(library, rados, "rbd_cache", configuration.cache ? "true" : "false")
        // librbd keeps its cache write-through until a handle's first flush, a guard for guests that
        // never flush. An NBD client is told the export has a volatile cache (flush is advertised)
        // and owes the flushes it needs; fio's random writes, which never flush, ran at two thirds
        // of the speed with the guard on (Documentation/Ceph.md).
        if configuration.cache { try set(library, rados, "rbd_cache_writethrough_until_flush", "false") }
    }

    /// Sets the three client timeouts: all to ``RBDClientConfiguration/timeout`` when given,
    /// otherwise each that ceph.conf left at librados' default to the default timeout. Returns the
    /// connect timeout in seconds, for messages.
    private static func timeoutSeconds(
        _ library: Librbd, _ rados: Librbd.Handle, _ configuration: RBDClientConfiguration
    ) throws(NBDError) -> String {
        // librados' own defaults: 5 minutes to connect; monitor and OSD requests without bound.
        let librados = ["client_mount_timeout": 300.0, "rados_mon_op_timeout": 0, "rados_osd_op_timeout": 0]
        let chosen = configuration.timeout ?? RBDClientConfiguration.defaultTimeout
        let (seconds, attoseconds) = chosen.components
        // librados reads these as whole seconds; a fraction rounds up so that 0.5 s is not 0 (no bound).
        let text = String(max(1, seconds + (attoseconds > 0 ? 1 : 0)))
        for (option, builtIn) in librados.sorted(by: { $0.key < $1.key }) {
            // A value set with rados_conf_set wins over ceph.conf, so only defaults are replaced.
            let current = get(library, rados, option).flatMap(Double.init)
            if configuration.timeout != nil || current == builtIn {
                try set(library, rados, option, text)
            }
        }
        return get(library, rados, "client_mount_timeout") ?? text
    }

    private static func set(_ library: Librbd, _ rados: Librbd.Handle, _ option: String, _ value: String)
        throws(NBDError)
    {
        let status = library.radosConfSet(rados, option, value)
        guard status == 0 else { throw NBDError(rbdResult: Int(status), "setting \(option) = \(value)") }
    }

    private static func get(_ library: Librbd, _ rados: Librbd.Handle, _ option: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 512)
        let status = buffer.withUnsafeMutableBufferPointer {
            library.radosConfGet(rados, option, $0.baseAddress!, $0.count)
        }
        guard status == 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

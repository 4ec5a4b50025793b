import NBDCore
import Synchronization

/// The cache filter as a run-time `FilterLayer`:
/// `nbd-serve --filter=cache file disk.img cache=writeback cache-on-read=true`.
///
/// The layer owns one ``CacheStore`` per export name, created when the first connection to that
/// export opens and shared by every later one, so all connections see one cache.
public final class CacheLayer: FilterLayer, Sendable {
    public var name: String { Self.filterName }
    /// The most export names that get their own cache file; connections to further names are refused.
    public static let maximumExports = 64
    /// The settings every store uses.
    public let configuration: CacheConfiguration
    private let stores = LockedValue<[String: CacheStore]>([:])

    /// Creates the layer; checks the settings as nbdkit's `config_complete` does.
    public init(configuration: CacheConfiguration = CacheConfiguration()) throws(NBDError) {
        try configuration.validate()
        self.configuration = configuration
    }

    /// The store of `exportName`, creating it for an export of `size` bytes.
    package func store(for exportName: String, size: UInt64) throws(NBDError) -> CacheStore {
        try stores.withLock { (stores: inout [String: CacheStore]) throws(NBDError) -> CacheStore in
            if let store = stores[exportName] {
                guard store.exportSize == size else {
                    throw NBDError(
                        .invalidArgument,
                        "cache: the export changed size from \(store.exportSize) to \(size) bytes; the cache cannot follow"
                    )
                }
                return store
            }
            // Every export name gets its own file; a client inventing names must not exhaust descriptors.
            guard stores.count < Self.maximumExports else {
                throw NBDError(
                    .noSpace,
                    "cache: \(Self.maximumExports) export names already have their own cache; refusing export '\(exportName)'"
                )
            }
            let store = try CacheStore(exportSize: size, configuration: configuration)
            stores[exportName] = store
            return store
        }
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let store = try store(for: connection.exportName, size: next.capabilities.size)
        return AnyBlockBackend(CacheFilter(wrapping: next, store: store))
    }

    /// Closes the cache files (they have no name, so their space returns to the filesystem).
    public func shutdown() async {
        stores.withLock { $0.removeAll() }
    }
}

extension CacheLayer: ConfigurableFilterLayer {
    public static var filterName: String { "cache" }
    public static var summary: String {
        "cache the layer below in a temporary file (writeback, writethrough or unsafe; TMPDIR, default /var/tmp)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("cache", "writeback, writethrough or unsafe (ignores flushes)", default: "writeback"),
            ParameterDescription(
                "cache-min-block-size", "smallest cache block, a power of 2 >= 4096 (or the filesystem block size)",
                default: "64K"),
            ParameterDescription(
                "cache-on-read", "true to cache what is read, or /PATH: cache reads while that file exists",
                default: "false"),
            ParameterDescription(
                "cache-max-size", "largest size of the cache file (at least 1M); LRU blocks are reclaimed"),
            ParameterDescription(
                "cache-high-threshold", "percent of cache-max-size where reclaiming starts", default: "95"),
            ParameterDescription(
                "cache-low-threshold", "percent of cache-max-size where reclaiming stops", default: "80"),
        ]
    }

    /// Creates the layer from nbdkit's parameters.
    public convenience init(parameters: ParameterValues) throws(NBDError) {
        var configuration = CacheConfiguration()
        configuration.mode = try parameters.choice(
            "cache", ["writeback": .writeback, "writethrough": .writethrough, "unsafe": .unsafe], default: .writeback)
        if let size = try parameters.size("cache-min-block-size") {
            guard size >= 4096, size & (size - 1) == 0, size <= UInt64(UInt32.max) else {
                throw NBDError(
                    .invalidArgument,
                    "cache-min-block-size=\(parameters["cache-min-block-size"]!): must be a power of 2 from 4096 to 2G")
            }
            configuration.minimumBlockSize = Int(size)
        }
        if let text = parameters["cache-on-read"] {
            configuration.onRead = try OnReadSetting.parse(text, for: "cache-on-read")
        }
        configuration.maximumSize = try parameters.size("cache-max-size")
        configuration.highThreshold = try parameters.integer("cache-high-threshold", in: 1...Int(UInt32.max)) ?? 95
        configuration.lowThreshold = try parameters.integer("cache-low-threshold", in: 1...Int(UInt32.max)) ?? 80
        try self.init(configuration: configuration)
    }
}

import NBDCore
import Synchronization

/// nbdkit's qcow2dec filter as a run-time `FilterLayer`: `nbd-serve --filter=qcow2dec file disk.qcow2`.
///
/// Serves the disk inside a qcow2 file (version 2, `compat=0.10`, or 3, `compat=1.1`) as raw,
/// read-only: stored, zero and unallocated clusters, zlib-compressed clusters, and zstd-compressed
/// ones where libzstd.so.1 (Debian's libzstd1) can be loaded. Block status comes from the cluster
/// tables. Backing files, encryption, internal snapshots, external data files, extended L2 entries
/// and images left dirty or marked corrupt are refused when a client connects, with the reason.
///
/// The first connection reads the header and the L1 table; later connections reuse them (and the
/// L2 tables cached since) while the file below keeps its size, and read them again otherwise.
public final class QCOW2DecLayer: FilterLayer, Sendable {
    public var name: String { Self.filterName }
    private let opened = LockedValue<QCOW2Image?>(nil)

    /// Creates the layer. The filter has no parameters.
    public init() {}

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let fileSize = next.capabilities.size
        let image: QCOW2Image
        if let cached = opened.withLock({ $0 }), cached.header.fileSize == fileSize {
            image = cached
        } else {
            image = try await QCOW2Image.open(next)
            opened.withLock { $0 = image }
        }
        return AnyBlockBackend(QCOW2DecFilter(wrapping: next, image: image))
    }

    /// Drops the tables.
    public func shutdown() async {
        opened.withLock { $0 = nil }
    }
}

extension QCOW2DecLayer: ConfigurableFilterLayer {
    public static var filterName: String { "qcow2dec" }
    public static var summary: String {
        "serve the disk inside a qcow2 file below (v2 or v3; zlib or zstd compressed clusters) as raw, read-only"
    }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; the filter takes no parameters.
    public convenience init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

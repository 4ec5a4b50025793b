import NBDCore
import Synchronization

/// The persistent images of a connection-cache export, one per export name, shared by every
/// connection. Connections only see them through their private snapshots.
final class ConnectionCacheStore: Sendable {
    private let images: LockedValue<[String: SparseImage]>

    init(initial: SparseImage) {
        images = LockedValue(["": initial])
    }

    /// Prepares the image for a connection to `exportName`. As in nbdkit's multi-conn test plugin, a
    /// non-empty name gets a fresh copy of the default image *each time a connection opens it*.
    func prepare(exportName: String) {
        guard !exportName.isEmpty else { return }
        images.withLock { $0[exportName] = $0[""] }
    }

    /// The current persistent image of `exportName` (a cheap copy-on-write value).
    func snapshot(of exportName: String) -> SparseImage {
        images.withLock { $0[exportName] ?? SparseImage() }
    }

    /// Applies `update` to the persistent image of `exportName`.
    func update(_ exportName: String, _ update: (inout SparseImage) -> Void) {
        images.withLock { update(&$0[exportName, default: SparseImage()]) }
    }
}

import NBDCore
import Synchronization

/// The persistent images of a connection-cache export, one per export name, shared by every
/// connection. Connections only see them through their private snapshots.
final class ConnectionCacheStore: Sendable {
    private let images: LockedValue<[String: SparseImage]>
    /// The image every export name starts from (`init=` at offset 0, zeroes after it).
    private let initial: SparseImage

    init(initial: SparseImage) {
        self.initial = initial
        images = LockedValue(["": initial])
    }

    /// Prepares the image for a connection to `exportName`: the first connection to a name creates
    /// its image from the initial one; later connections find it as the flushes left it.
    ///
    /// nbdkit's multi-conn test plugin re-creates a named export's image from the default one every
    /// time a connection opens it, which throws away what other connections flushed; a flushed write
    /// must never be lost because someone else connected (Documentation/Backends.md).
    func prepare(exportName: String) {
        guard !exportName.isEmpty else { return }
        let initial = self.initial
        images.withLock { images in
            if images[exportName] == nil { images[exportName] = initial }
        }
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

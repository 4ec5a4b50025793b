import NBDCore

/// An export whose connections each keep a **private cache**: the test double that shows why
/// multi-conn matters, with the observable behaviour of nbdkit's multi-conn test plugin.
///
/// - Each export name has one persistent image, created on the first connection to that name as
///   `initialText` at offset 0 followed by zero bytes, and kept for the provider's life. (nbdkit's
///   test plugin re-creates a named image from the default one on every open, losing what other
///   connections flushed; this one never does.)
/// - On its first read, write, zero, trim or cache, a connection takes a snapshot of the persistent
///   image. Reads and writes then use only the snapshot, so other connections do not see its writes,
///   and it does not see theirs.
/// - A flush copies the ranges this connection wrote into the persistent image and drops the snapshot;
///   the next access takes a fresh one.
/// - FUA flushes the connection; with `strictFUA` it writes just that request's range through instead.
/// - It does not advertise multi-conn. It supports flush, native FUA, trim, zero and native cache.
///
/// Serve it without the multi-conn filter and a client that writes on one connection and reads on
/// another sees stale data; put the filter (emulate mode) in front and it becomes safe to advertise
/// `NBD_FLAG_CAN_MULTI_CONN`. Use it to test clients and filters.
public struct ConnectionCacheProvider: BackendProvider {
    /// The export size in bytes.
    public let size: UInt64
    /// Whether FUA writes through only the request's range (`true`) or flushes the connection.
    public let strictFUA: Bool
    let store: ConnectionCacheStore

    /// Creates the export. `initialText` is stored (as UTF-8) at offset 0 of the default image and
    /// must fit in `size`.
    public init(size: UInt64, initialText: String = "", strictFUA: Bool = false) throws(NBDError) {
        let bytes = Array(initialText.utf8)
        guard size <= UInt64(Int64.max) else {
            throw NBDError(.invalidArgument, "size=\(size): larger than the NBD maximum of 2^63 - 1 bytes")
        }
        guard UInt64(bytes.count) <= size else {
            throw NBDError(
                .invalidArgument,
                "init=: the text is \(bytes.count) bytes but size is only \(size): raise size= or shorten init=")
        }
        var image = SparseImage()
        bytes.withUnsafeBytes { image.write($0, at: 0) }
        self.size = size
        self.strictFUA = strictFUA
        self.store = ConnectionCacheStore(initial: image)
    }

    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> ConnectionCacheBackend {
        store.prepare(exportName: connection.exportName)
        return ConnectionCacheBackend(
            store: store, exportName: connection.exportName, size: size, strictFUA: strictFUA,
            isReadOnly: connection.isReadOnly)
    }

    /// The persistent contents of `count` bytes at `offset` of an export, as a flush would leave
    /// them; for tests and diagnostics.
    public func persistentBytes(_ count: Int, at offset: UInt64, exportName: String = "") -> [UInt8] {
        let image = store.snapshot(of: exportName)
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { image.read(into: $0, at: offset) }
        return bytes
    }
}

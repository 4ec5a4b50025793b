import NBDCore

/// An export held in memory, like nbdkit's `memory` plugin: sparse, shared by every connection, and
/// gone when the process ends.
///
/// Only written data takes memory, in 64 KiB pages; zeroing or trimming whole pages gives them back.
/// An export may be as large as the NBD protocol allows (2^63 - 1 bytes) whatever the machine's
/// memory, as long as the data written fits.
///
/// Every connection sees the same bytes and there is no cache, so the export advertises multi-conn:
/// a write is visible to all connections as soon as it is acknowledged.
///
/// ```swift
/// let export = try MemoryBackendProvider(size: 1 << 30)
/// let backend = try await export.open(ConnectionInfo())
/// try await backend.write(bytes, at: 0, flags: [])
/// ```
public struct MemoryBackendProvider: BackendProvider {
    public typealias Backend = MemoryBackend

    @usableFromInline let store: MemoryStore

    /// Creates an empty export of `size` bytes; nothing is allocated until it is written.
    ///
    /// - Throws: `NBDError.Code.invalidArgument` if `size` exceeds 2^63 - 1, the largest export the
    ///   NBD protocol can describe.
    public init(size: UInt64) throws(NBDError) {
        guard size <= UInt64(Int64.max) else {
            throw NBDError(
                .invalidArgument,
                "memory export size \(size) is larger than the NBD maximum of \(Int64.max) bytes (2^63 - 1)")
        }
        store = MemoryStore(size: size)
    }

    /// The export size in bytes.
    public var size: UInt64 { store.size }

    /// The size of the pages memory is allocated and released in: 64 KiB.
    public static var pageSize: Int { MemoryStore.pageSize }

    /// How many pages currently hold data.
    public var allocatedPageCount: Int { store.allocatedPageCount }

    /// The memory the export currently takes: its data pages plus its page tables.
    public var allocatedBytes: Int { store.allocatedBytes }

    /// Opens a connection's view of the shared store. Read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> MemoryBackend {
        MemoryBackend(store: store, isReadOnly: connection.isReadOnly)
    }
}

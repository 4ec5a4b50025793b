/// One client connection's view of an export: the operations of the NBD protocol plus the
/// capabilities resolved when the connection opened.
///
/// A ``BackendProvider`` opens one backend per connection, the way an nbdkit plugin's `open` does, so
/// a backend may keep state per connection (a private cache, a file position, a remote session).
/// Filters wrap a backend and are backends themselves (see ``Filter``).
///
/// ## Concurrency
/// A backend must accept concurrent calls: the server may run several requests of one connection at
/// once, and the multi-conn filter may flush it from another connection's task. Buffers passed in are
/// valid only until the call returns.
///
/// ## Requests reaching a backend
/// The server validates each request against the outermost capabilities before it enters the chain
/// (bounds, alignment, read-only, advertised features; see ``RequestValidator``), so a backend sees only
/// requests within its export. A filter that changes capabilities must keep requests valid for the
/// layer below.
public protocol BlockBackend: Sendable {
    /// What this connection's view of the export can do. Read once when the connection opens.
    var capabilities: Capabilities { get }

    /// Reads `buffer.count` bytes starting at `offset` into `buffer`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)

    /// Writes `data` at `offset`. With ``CommandFlags/fua`` the data must be durable before returning.
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)

    /// Writes `count` zero bytes at `offset`. Without ``CommandFlags/noHole`` the range may be
    /// deallocated instead; with ``CommandFlags/fastZero`` fail with ``NBDError/Code/notSupported``
    /// rather than writing slowly.
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError)

    /// Tells the storage that `count` bytes at `offset` are no longer needed. Reading them afterwards
    /// may return anything.
    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError)

    /// Makes every write completed before this call durable.
    func flush(flags: CommandFlags) async throws(NBDError)

    /// Prefetches `count` bytes at `offset` into whatever cache the backend keeps.
    func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError)

    /// Describes the allocation of the range starting at `offset`: at least one extent, covering at
    /// most `count` bytes is expected but longer lists are trimmed by the caller. With
    /// ``CommandFlags/requestOne`` one extent is enough.
    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent]

    /// Ends the connection's use of the backend. Called once, after the last request finished.
    func close() async

    /// A human-readable description of the export this connection opened, sent to a client that
    /// asks for `NBD_INFO_DESCRIPTION` (nbdkit's `export_description`), or `nil` for the server's
    /// configured one. Filters pass the layer below's through unless they change it; the default
    /// is `nil`.
    var exportDescription: String? { get }

    /// The open file and position that hold exactly the `count` bytes at `offset`, as a read would
    /// return them, when this layer can tell without reading them; `nil` otherwise.
    ///
    /// The server uses it to send large reads straight from the file with `sendfile`, without
    /// copying the data through its own buffers (see ``FileRegion``). Returning `nil` is always
    /// correct: the read then runs as usual. The call must be cheap and must not block for long
    /// (no reads of data; metadata already in memory only). The default is `nil`, also for
    /// ``Filter``s: a filter that changes or observes the data it reads must not let the server
    /// bypass it, so a filter opts in by implementing this, usually by asking ``Filter/next`` for
    /// the range it would read.
    func fileRegion(count: Int, at offset: UInt64) async -> FileRegion?
}

extension BlockBackend {
    /// Backends without a volatile cache need not flush.
    public func flush(flags: CommandFlags) async throws(NBDError) {}

    /// Backends without a cache ignore cache requests.
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    /// Backends that do not track allocation report the whole range as data.
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.data(count)]
    }

    /// Trim is a hint; backends that cannot deallocate ignore it.
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    /// Backends with nothing to release do nothing on close.
    public func close() async {}

    /// No description of their own: the server's configured one is used.
    public var exportDescription: String? { nil }

    /// Unknown: reads go through ``read(into:at:flags:)``.
    public func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? { nil }
}

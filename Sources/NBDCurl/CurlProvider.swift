import NBDCore

/// A disk image on a web server, served over NBD as nbdkit's `curl` plugin serves it: reads are
/// HTTP range requests (`Range: bytes=A-B`, answered 206) over kept-alive connections, writes are
/// `PUT`s with a `Content-Range`.
///
/// ```swift
/// let image = try await CurlProvider(
///     configuration: CurlConfiguration(url: "https://images.example.com/disk.raw"), isReadOnly: true)
/// let server = NBDServer(provider: image)
/// ```
///
/// - libcurl is loaded at run time (`libcurl.so.4`, Debian package `libcurl4`); creating a
///   provider where it is missing throws an error that names the package.
/// - At start the provider learns the size (`HEAD`'s `Content-Length`, or the length in the
///   `Content-Range` of a `Range: bytes=0-0` request) and checks that the server honours ranges
///   (it asks for the first byte and wants status 206). An error status, a server that ignores
///   ranges or one that will not say the size is refused then, with the URL and the reason.
/// - `connections` libcurl handles (HTTP connections kept alive), driven together by one thread
///   through a libcurl multi handle, serve the requests of every client connection; a request's
///   task suspends until its transfer is done (reads and writes are declared in
///   `Capabilities.suspendingOperations`).
/// - A response that is not exactly the bytes asked for (another status, a shorter or longer
///   body, another range) fails the request with `EIO`; the next request is tried afresh.
/// - Capabilities: no flush, FUA or trim (HTTP has none); zeroes are written as data; multi-conn,
///   since every connection reads and writes the same resource through the same transfers
///   with no cache in between.
public struct CurlProvider: BackendProvider {
    /// The settings every transfer uses.
    public let configuration: CurlConfiguration
    /// The image size in bytes, learned at start.
    public let size: UInt64
    /// Whether connections are read-only (`-r`).
    public let isReadOnly: Bool
    private let pool: CurlTransferPool

    /// Loads libcurl, starts the transfer thread and asks the server for the image's size.
    ///
    /// - Throws: `NBDError` when libcurl is missing, a setting is refused by libcurl, or the URL
    ///   cannot be served (unreachable, an error status, no ranges, no size).
    public init(configuration: CurlConfiguration, isReadOnly: Bool = false) async throws(NBDError) {
        let curl = try LibCurl.shared.get()
        guard configuration.connections >= 1 else {
            throw NBDError(.invalidArgument, "connections=\(configuration.connections): expected at least 1")
        }
        let lowercased = configuration.url.lowercased()
        guard lowercased.hasPrefix("http://") || lowercased.hasPrefix("https://") else {
            throw NBDError(
                .invalidArgument,
                "url=\(configuration.url): only http:// and https:// URLs are served (range requests are HTTP's); use the file backend for local files"
            )
        }
        let scripts: CurlScripts? =
            configuration.headerScript == nil && configuration.cookieScript == nil
            ? nil
            : CurlScripts(
                url: configuration.url, headerScript: configuration.headerScript,
                headerRenew: configuration.headerScriptRenew, cookieScript: configuration.cookieScript,
                cookieRenew: configuration.cookieScriptRenew)
        let pool = try CurlTransferPool(count: configuration.connections, curl: curl) { () throws(NBDError) in
            try CurlHandle(curl: curl, configuration: configuration, scripts: scripts)
        }
        do {
            size = try await Self.probe(pool, configuration.url)
        } catch {
            await pool.stop()
            throw error
        }
        self.configuration = configuration
        self.isReadOnly = isReadOnly
        self.pool = pool
    }

    /// Learns the size and checks that ranges are honoured.
    private static func probe(_ pool: CurlTransferPool, _ url: String) async throws(NBDError) -> UInt64 {
        let head = try await pool.perform { (handle) throws(NBDError) in try handle.startHead() }
        // Some servers (pre-signed object-store URLs) refuse HEAD but serve GET: the range
        // request below decides then.
        let headSize = (200..<300).contains(head.status) ? head.contentLength.map(UInt64.init) : nil
        if headSize == 0 { return 0 }
        switch try await pool.perform({ (handle) throws(NBDError) in try handle.startProbeFirstByte() }) {
        case .size(let total):
            if let headSize, headSize != total {
                throw NBDError(
                    .ioError,
                    "curl: \(url): HEAD says \(headSize) bytes but a range request says \(total); the image is changing or the server is broken"
                )
            }
            guard total <= UInt64(Int64.max) else {
                throw NBDError(
                    .invalidArgument, "curl: \(url): the image size \(total) is above the NBD limit 2^63 - 1")
            }
            return total
        case .rangesIgnored:
            throw NBDError(
                .notSupported,
                "curl: \(url): the server does not honour range requests (it answered Range: bytes=0-0 with status 200 and the whole resource), so the image cannot be read block by block"
            )
        case .status(let status):
            throw NBDError(
                status == 401 || status == 403 ? .notPermitted : .ioError,
                "curl: \(url): the server answered HTTP status \(status)\(Self.hint(status))")
        }
    }

    private static func hint(_ status: Int) -> String {
        switch status {
        case 401: " (authentication required or refused: check user= and password=)"
        case 403: " (forbidden)"
        case 404: " (not found)"
        case 416: " (range not satisfiable)"
        case 500..<600: " (server error)"
        default: ""
        }
    }

    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> CurlBackend {
        var capabilities = Capabilities(
            size: size, isWritable: true, canFlush: false, fua: .none, canTrim: false, canZero: true,
            canFastZero: false, cache: .none, canExtents: false, canMultiConn: true,
            suspendingOperations: [.read, .write, .zero])
        if isReadOnly || connection.isReadOnly { capabilities = capabilities.readOnly }
        pool.clientOpened()
        return CurlBackend(capabilities: capabilities, pool: pool)
    }

    /// Whether the transfer thread resumes requests itself, with no hand-off to the server's
    /// pool (while at most one client connection is open).
    package var resumesRequestsInline: Bool { pool.resumesInline }

    /// Whether the transfer thread would resume a request that moves `bytes` itself, now.
    package func resumesRequestsInline(bytes: Int) -> Bool { pool.resumesInline(bytes: bytes) }

    /// The transfers running now, and the most that ever ran at once (never more than
    /// `connections=`): what a test sees of the handle pool.
    package var runningTransfers: Int { pool.runningTransfers }
    package var mostConcurrentTransfers: Int { pool.mostConcurrentTransfers }

    /// Has the next free handle (with `connections=1`, the only one) record the largest piece
    /// libcurl receives from its socket at once: what a test sees of the receive buffer size.
    package func observeReceives() async throws(NBDError) {
        try await pool.withHandle { (handle) throws(NBDError) in try handle.observeReceives() }
    }

    /// The largest piece received since ``observeReceives()``, on the next free handle.
    package func largestReceive() async throws(NBDError) -> Int {
        try await pool.withHandle { handle in handle.largestReceive }
    }

    /// Ends the transfer thread once the requests already queued are done.
    public func shutdown() async {
        await pool.stop()
    }
}

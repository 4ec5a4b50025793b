#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import NBDCore

/// The count filter as a run-time `FilterLayer`: `nbd-serve --filter=count memory 1G`. When the
/// server stops it prints `nbd-serve: count bytes: read N, written N, zeroed N, trimmed N` on
/// standard error (nbdkit prints the same words as a debug message, seen only with `-v`).
public struct CountLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The counts every connection adds to.
    public let counts = ByteCounts()
    /// Where the report goes; standard error by default.
    let emit: @Sendable (String) -> Void

    /// Creates the layer; the report goes to standard error.
    public init() {
        self.init(emit: { line in
            let text = Array("nbd-serve: \(line)\n".utf8)
            _ = text.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        })
    }

    /// Creates the layer with the report passed to `emit` (for tests).
    package init(emit: @escaping @Sendable (String) -> Void) {
        self.emit = emit
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(CountFilter(wrapping: next, counts: counts))
    }

    /// Prints the totals.
    public func shutdown() async {
        emit(counts.report)
    }
}

extension CountLayer: ConfigurableFilterLayer {
    public static var filterName: String { "count" }
    public static var summary: String {
        "count the bytes read, written, zeroed and trimmed; print the totals on standard error at exit"
    }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; the filter has no parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

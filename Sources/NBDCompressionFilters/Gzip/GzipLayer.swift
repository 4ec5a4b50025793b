import NBDCore

/// nbdkit's gzip filter as a run-time `FilterLayer`: `nbd-serve --filter=gzip file disk.img.gz`.
///
/// gzip cannot be entered anywhere but at its start, so the first connection decompresses the
/// whole file below into an unlinked temporary file in `TMPDIR` (default `/var/tmp`) and every
/// connection reads from that copy, read-only. Concatenated gzip members are decompressed one after
/// the other, as `gzip -d` does. A file that is not gzip, is truncated or corrupt is refused when
/// the connection opens, with a message saying which.
public final class GzipLayer: FilterLayer, Sendable {
    public var name: String { Self.filterName }
    private let shared = SharedDecompression { next in
        do throws(NBDError) {
            return .success(try await DecompressedFile.decompress(next, with: try GzipDecoder()))
        } catch {
            return .failure(error)
        }
    }

    /// Creates the layer. The filter has no parameters.
    public init() {}

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let file = try await shared.file(from: next)
        return AnyBlockBackend(DecompressedFileFilter(wrapping: next, file: file, format: "gzip"))
    }

    /// Drops the decompressed copy.
    public func shutdown() async {
        shared.release()
    }
}

extension GzipLayer: ConfigurableFilterLayer {
    public static var filterName: String { "gzip" }
    public static var summary: String {
        "serve the uncompressed contents of a gzip file below, read-only (decompressed once into a temporary file in TMPDIR, default /var/tmp)"
    }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; the filter takes no parameters.
    public convenience init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}

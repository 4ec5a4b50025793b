import NBDCore
import Synchronization

/// The cow filter as a run-time `FilterLayer`: `nbd-serve --filter=cow file base.img`.
///
/// The layer owns one ``COWOverlay`` per export name (as nbdkit ≥ 1.44), created when the first
/// connection to that export opens. The layer below is opened read-only (see
/// ``opensLayerBelowReadOnly``), so a read-only file can be served writable.
public final class COWLayer: FilterLayer, Sendable {
    public var name: String { Self.filterName }
    /// The most export names that get their own overlay file; connections to further names are refused.
    public static let maximumExports = 64
    /// The settings every overlay uses.
    public let configuration: COWConfiguration
    private let overlays = LockedValue<[String: COWOverlay]>([:])

    /// Creates the layer.
    public init(configuration: COWConfiguration = COWConfiguration()) throws(NBDError) {
        try configuration.validate()
        self.configuration = configuration
    }

    /// The overlay of `exportName`, creating it for an export of `size` bytes.
    package func overlay(for exportName: String, size: UInt64) throws(NBDError) -> COWOverlay {
        try overlays.withLock { (overlays: inout [String: COWOverlay]) throws(NBDError) -> COWOverlay in
            if let overlay = overlays[exportName] {
                guard overlay.exportSize == size else {
                    throw NBDError(
                        .invalidArgument,
                        "cow: the export changed size from \(overlay.exportSize) to \(size) bytes; the overlay cannot follow"
                    )
                }
                return overlay
            }
            // Every export name gets its own file; a client inventing names must not exhaust descriptors.
            guard overlays.count < Self.maximumExports else {
                throw NBDError(
                    .noSpace,
                    "cow: \(Self.maximumExports) export names already have their own overlay; refusing export '\(exportName)'"
                )
            }
            let overlay = try COWOverlay(exportSize: size, configuration: configuration)
            overlays[exportName] = overlay
            return overlay
        }
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let overlay = try overlay(for: connection.exportName, size: next.capabilities.size)
        return AnyBlockBackend(COWFilter(wrapping: next, overlay: overlay, connection: connection))
    }

    /// Drops the overlays (their files have no name; the space returns to the filesystem).
    public func shutdown() async {
        overlays.withLock { $0.removeAll() }
    }
}

extension COWLayer: ConfigurableFilterLayer {
    public static var filterName: String { "cow" }
    public static var summary: String {
        "writable copy-on-write overlay in a temporary file; the layer below is never written (TMPDIR)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("cow-block-size", "overlay block size, a power of 2 >= 4096", default: "64K"),
            ParameterDescription(
                "cow-on-cache", "true to copy cache (prefetch) requests into the overlay", default: "false"),
            ParameterDescription(
                "cow-on-read", "true to copy what is read into the overlay, or /PATH: while that file exists",
                default: "false"),
        ]
    }
    public static var opensLayerBelowReadOnly: Bool { true }

    /// Creates the layer from nbdkit's parameters.
    public convenience init(parameters: ParameterValues) throws(NBDError) {
        var configuration = COWConfiguration()
        if let size = try parameters.size("cow-block-size") {
            guard size >= 4096, size & (size - 1) == 0, size <= UInt64(UInt32.max) else {
                throw NBDError(
                    .invalidArgument,
                    "cow-block-size=\(parameters["cow-block-size"]!): must be a power of 2 from 4096 to 2G")
            }
            configuration.blockSize = Int(size)
        }
        configuration.onCache = try parameters.boolean("cow-on-cache", default: false)
        if let text = parameters["cow-on-read"] {
            configuration.onRead = try OnReadSetting.parse(text, for: "cow-on-read")
        }
        try self.init(configuration: configuration)
    }
}

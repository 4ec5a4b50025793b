import NBDCore

/// The scan filter as a run-time `FilterLayer`: `nbd-serve --filter=scan --filter=cache file
/// disk.img scan-size=4M`.
public struct ScanLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The export's scan.
    public let coordinator: ScanCoordinator

    /// Creates the layer.
    public init(settings: ScanSettings = ScanSettings()) {
        coordinator = ScanCoordinator(settings: settings)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(ScanFilter(wrapping: next, coordinator: coordinator, connection: connection.id))
    }

    /// Ends the scan thread.
    public func shutdown() async {
        coordinator.stop()
    }
}

extension ScanLayer: ConfigurableFilterLayer {
    public static var filterName: String { "scan" }
    public static var summary: String {
        "prefetch the whole disk with cache requests while clients are connected (add --filter=cache after it)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("scan-ahead", "skip the scan forward past a client's read beyond it", default: "true"),
            ParameterDescription(
                "scan-clock", "resume where the scan stopped when clients reconnect (false: from the start)",
                default: "true"),
            ParameterDescription("scan-forever", "start over after the end of the disk", default: "false"),
            ParameterDescription("scan-size", "the size of each prefetch, a power of 2", default: "2M"),
        ]
    }

    /// Creates the layer from its parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        let size = try parameters.size("scan-size", default: 2 << 20)
        guard size > 0, size & (size - 1) == 0, size <= UInt64(UInt32.max) else {
            throw NBDError(
                .invalidArgument, "scan-size=\(parameters["scan-size"] ?? ""): expected a power of 2 such as 64K or 2M")
        }
        self.init(
            settings: ScanSettings(
                ahead: try parameters.boolean("scan-ahead", default: true),
                clock: try parameters.boolean("scan-clock", default: true),
                forever: try parameters.boolean("scan-forever", default: false), size: size))
    }
}

/// The statistics of the connections that asked for one export name: one entry of
/// ``StatsCollector/exportSnapshots()``.
public struct ExportStats: Sendable, Hashable {
    /// The export name the connections asked for; `""` is the default export.
    public var exportName: String
    /// How many of its connections were open when the snapshot was taken.
    public var openConnections: Int
    /// Everything its connections counted, closed ones included.
    public var snapshot: StatsSnapshot

    /// Creates the statistics of one export.
    public init(exportName: String, openConnections: Int, snapshot: StatsSnapshot) {
        self.exportName = exportName
        self.openConnections = openConnections
        self.snapshot = snapshot
    }
}

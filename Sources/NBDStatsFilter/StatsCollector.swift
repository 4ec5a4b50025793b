import NBDCore
import Synchronization

/// The statistics of one export, shared by every connection's ``StatsFilter``.
///
/// Each connection counts into its own block of atomic counters, registered here when the filter is
/// created; the hot path touches nothing shared with other connections. The collector's lock is taken
/// only when a connection opens or closes and when a snapshot is taken. A closing connection's counts are
/// folded into a retained total, so a snapshot always covers every request since the collector started.
///
/// ```swift
/// let stats = StatsCollector()
/// let export = provider.wrapped { next, _ in StatsFilter(wrapping: next, collector: stats) }
/// // ... later, at any time:
/// print(stats.report())          // nbdkit's text format
/// let reads = stats.snapshot()[.read].count
/// ```
public final class StatsCollector: Sendable {
    /// The `statsthreshold` percentage (0...100): the share of requests whose sizes the report lists
    /// individually. 0 turns the size and alignment histograms off, and they are then not collected.
    public let threshold: Int
    /// The clock requests are timed with.
    public let clock: StatsClock
    /// When the collector started, on ``clock``.
    public let startNanoseconds: UInt64

    private struct Registry {
        /// Open connections' counters, with the export name each connection asked for.
        var live: [ObjectIdentifier: (export: String, counters: ConnectionCounters)] = [:]
        /// Closed connections' counts, by export name.
        var retired: [String: [OperationStats]] = [:]
    }

    private static var emptyOperations: [OperationStats] {
        StatsOperation.allCases.map { OperationStats(operation: $0) }
    }

    private let registry = LockedValue(Registry())

    /// Creates a collector and starts its clock.
    ///
    /// - Precondition: `threshold` is in 0...100 (use ``parseThreshold(_:)`` for user input).
    public init(threshold: Int = 95, clock: StatsClock = .monotonic) {
        precondition((0...100).contains(threshold), "statsthreshold must be between 0 and 100 (percent)")
        self.threshold = threshold
        self.clock = clock
        self.startNanoseconds = clock.now()
    }

    /// Parses a `statsthreshold` value: an integer percentage from 0 to 100.
    public static func parseThreshold(_ text: String) throws(NBDError) -> Int {
        guard let value = Int(text) else {
            throw NBDError(.invalidArgument, "statsthreshold=\(text): expected an integer percentage from 0 to 100")
        }
        guard (0...100).contains(value) else {
            throw NBDError(.invalidArgument, "statsthreshold=\(text): expected an integer percentage from 0 to 100")
        }
        return value
    }

    /// How many distinct export names are counted apart. A server that accepts any name would
    /// otherwise let clients grow the collector (and a metrics system's series) without bound; later
    /// names are counted together under ``otherExports``.
    public static let maximumExportNames = 64

    /// The name under which connections to export names beyond the first ``maximumExportNames`` are
    /// counted together.
    public static let otherExports = "(other)"

    /// Registers a new connection's counters, counted under the export name it asked for.
    func register(export: String) -> ConnectionCounters {
        let counters = ConnectionCounters(histograms: threshold != 0)
        registry.withLock { registry in
            var name = export
            if registry.retired[name] == nil, !registry.live.values.contains(where: { $0.export == name }) {
                var names = Set(registry.retired.keys)
                for entry in registry.live.values { names.insert(entry.export) }
                if names.count >= Self.maximumExportNames { name = Self.otherExports }
            }
            registry.live[ObjectIdentifier(counters)] = (name, counters)
        }
        return counters
    }

    /// Folds a closed connection's counters into the retained total. Calling it twice is harmless.
    func retire(_ counters: ConnectionCounters) {
        registry.withLock { registry in
            guard let entry = registry.live.removeValue(forKey: ObjectIdentifier(counters)) else { return }
            var retired = registry.retired[entry.export] ?? Self.emptyOperations
            Self.add(counters, to: &retired)
            registry.retired[entry.export] = retired
        }
    }

    private static func add(_ counters: ConnectionCounters, to operations: inout [OperationStats]) {
        for operation in StatsOperation.allCases {
            operations[operation.index].merge(
                OperationStats(operation: operation, counters: counters.operations[operation.index]))
        }
    }

    /// The number of connections whose filters are open.
    public var openConnections: Int { registry.withLock { $0.live.count } }

    /// Everything counted so far, over every export. Requests under way while the snapshot is taken may
    /// be partly counted (their operation count but not yet their bytes, for instance); finished
    /// requests are complete.
    public func snapshot() -> StatsSnapshot {
        let now = clock.now()
        let operations: [OperationStats] = registry.withLock { registry in
            var operations = Self.emptyOperations
            for retired in registry.retired.values {
                for operation in StatsOperation.allCases {
                    operations[operation.index].merge(retired[operation.index])
                }
            }
            for entry in registry.live.values {
                Self.add(entry.counters, to: &operations)
            }
            return operations
        }
        return snapshot(at: now, operations)
    }

    /// Everything counted so far, one entry per export name that any connection asked for (`""` is
    /// the default export), by name, with the number of its connections open now. Names beyond the
    /// first ``maximumExportNames`` are counted together under ``otherExports``.
    public func exportSnapshots() -> [ExportStats] {
        let now = clock.now()
        let entries: [(String, [OperationStats], Int)] = registry.withLock { registry in
            var byExport = registry.retired
            var open: [String: Int] = [:]
            for entry in registry.live.values {
                var operations = byExport[entry.export] ?? Self.emptyOperations
                Self.add(entry.counters, to: &operations)
                byExport[entry.export] = operations
                open[entry.export, default: 0] += 1
            }
            return byExport.map { ($0.key, $0.value, open[$0.key] ?? 0) }
        }
        return entries.sorted { $0.0 < $1.0 }.map {
            ExportStats(exportName: $0.0, openConnections: $0.2, snapshot: snapshot(at: now, $0.1))
        }
    }

    private func snapshot(at now: UInt64, _ operations: [OperationStats]) -> StatsSnapshot {
        StatsSnapshot(
            elapsedNanoseconds: now >= startNanoseconds ? now - startNanoseconds : 0,
            threshold: threshold, operations: operations)
    }

    /// The report in nbdkit's text format (see ``StatsSnapshot/report()``), as of now.
    public func report() -> String { snapshot().report() }

    /// Writes the report in nbdkit's text format, as of now, to `target` (a `String`, or a stream of
    /// your own).
    public func report(to target: inout some TextOutputStream) {
        target.write(report())
    }

    /// The statistics as JSON (see ``StatsSnapshot/json()``), as of now.
    public func json() -> String { snapshot().json() }
}

import NBDCore
import Synchronization

/// Rewrites the statsfile every `statsinterval` while the server runs, each time atomically
/// (``StatsFile/replace(_:with:)``), and once more at shutdown.
///
/// A write that fails (a full disk, a directory removed) is reported on standard error and tried again
/// at the next interval: statistics must never stop the server.
final class StatsWriter: Sendable {
    let path: String
    let format: StatsFormat
    let collector: StatsCollector
    /// Called after each periodic write, with its outcome (tests wait on it).
    let afterWrite: (@Sendable (Result<Void, NBDError>) -> Void)?
    private let timer: LockedValue<Task<Void, Never>?> = LockedValue(nil)

    init(
        path: String, format: StatsFormat, collector: StatsCollector,
        afterWrite: (@Sendable (Result<Void, NBDError>) -> Void)? = nil
    ) {
        self.path = path
        self.format = format
        self.collector = collector
        self.afterWrite = afterWrite
    }

    /// Writes now, throwing what went wrong (used at start, so a bad path fails before the server
    /// listens).
    func write() throws(NBDError) {
        try StatsFile.replace(path, with: format.render(collector))
    }

    /// Starts rewriting every `interval`.
    func start(every interval: Duration) {
        let task = Task.detached { [self] in
            while true {
                do {
                    try await Task.sleep(for: interval)
                } catch {
                    return  // cancelled: shutdown writes the last one
                }
                let outcome: Result<Void, NBDError>
                do throws(NBDError) {
                    try write()
                    outcome = .success(())
                } catch {
                    reportToStandardError("stats filter: \(error.message)\n")
                    outcome = .failure(error)
                }
                afterWrite?(outcome)
            }
        }
        timer.withLock { $0 = task }
    }

    /// Stops the timer (waiting for a write under way to finish) and writes the final statistics.
    func finish() async {
        let task = timer.withLock { task in
            defer { task = nil }
            return task
        }
        task?.cancel()
        await task?.value
        do {
            try write()
        } catch {
            reportToStandardError("stats filter: \(error.message)\n")
        }
    }
}

import NBDCore
import Synchronization

/// The scan of one export: one background task at a time sends cache requests across the disk
/// through the first connected client's stack, while clients are connected.
///
/// The task runs on a thread of its own (the one readahead uses for its prefetches), so a cache request that blocks in the
/// layer below never holds a thread of the cooperative pool or of a connection.
public final class ScanCoordinator: Sendable {
    struct State: Sendable {
        /// Where the next prefetch starts.
        var position: UInt64 = 0
        /// Open connections.
        var connections = 0
        /// The connection whose stack the scan uses, and the task.
        var owner: UInt64?
        var task: Task<Void, Never>?
    }

    /// The parameters.
    public let settings: ScanSettings
    let state = LockedValue(State())
    let thread = PrefetchThread(name: "nbd-scan")

    /// Creates the coordinator.
    public init(settings: ScanSettings) {
        self.settings = settings
    }

    deinit {
        thread.stop()
    }

    /// Where the next prefetch starts (for tests).
    package var position: UInt64 { state.withLock { $0.position } }

    /// Stops the scan thread; every connection has closed.
    func stop() {
        thread.stop()
    }

    /// A connection opened with `backend` as the layer below: starts the scan through it when none
    /// runs and the layer below can cache.
    func connected(_ connection: UInt64, below backend: AnyBlockBackend) {
        state.withLock { state in
            if state.connections == 0 && !settings.clock { state.position = 0 }
            state.connections += 1
            guard state.owner == nil, backend.capabilities.cache != .none, backend.capabilities.size > 0 else { return }
            state.owner = connection
            state.task = Task(executorPreference: thread) { [self] in await scan(backend) }
        }
    }

    /// A connection is closing: if the scan uses its stack, ends the scan and waits for it, so the
    /// stack is not used after it closes.
    func disconnecting(_ connection: UInt64) async {
        let task: Task<Void, Never>? = state.withLock { state in
            state.connections -= 1
            guard state.owner == connection else { return nil }
            state.owner = nil
            defer { state.task = nil }
            return state.task
        }
        if let task {
            task.cancel()
            await task.value
        }
    }

    /// A client read `count` bytes at `offset`: with `scan-ahead`, the scan skips past it.
    func clientRead(count: UInt64, at offset: UInt64) {
        guard settings.ahead else { return }
        let end = offset + count
        state.withLock { state in
            if end > state.position {
                // Round up to the prefetch size, so prefetches stay aligned.
                state.position = (end + settings.size - 1) / settings.size * settings.size
            }
        }
    }

    private func scan(_ backend: AnyBlockBackend) async {
        let size = backend.capabilities.size
        while !Task.isCancelled {
            let start: UInt64? = state.withLock { state in
                if state.position >= size {
                    guard settings.forever else { return nil }
                    state.position = 0
                }
                return state.position
            }
            guard let start else { return }
            let count = min(settings.size, size - start)
            do {
                try await backend.cache(count: count, at: start, flags: [])
            } catch {
                // A layer that fails to prefetch will fail again: stop rather than spin.
                return
            }
            state.withLock { state in
                state.position = max(state.position, start + count)
            }
        }
    }
}

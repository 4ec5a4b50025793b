import NBDBackends
import NBDConnectionFilters
import NBDCore
import Synchronization

/// Counts the opens and closes that reach the export below the filter under test.
final class OpenCounter: Sendable {
    let opens = Atomic<Int>(0)
    let closes = Atomic<Int>(0)
}

/// A layer that counts what opens through it, placed under the filter under test.
struct CountingLayer: FilterLayer {
    let counter: OpenCounter
    var name: String { "counting" }

    func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        counter.opens.wrappingAdd(1, ordering: .relaxed)
        return AnyBlockBackend(CountingClose(next: next, counter: counter))
    }
}

struct CountingClose: Filter {
    let next: AnyBlockBackend
    let counter: OpenCounter

    func close() async {
        await next.close()
        counter.closes.wrappingAdd(1, ordering: .relaxed)
    }
}

/// A ServerControl that records what the stack asked for.
final class RecordingControl: Sendable {
    let shutdowns = Atomic<Int>(0)
    let disconnected = LockedValue<[UInt64]>([])

    var control: ServerControl {
        ServerControl(
            requestShutdown: { self.shutdowns.wrappingAdd(1, ordering: .relaxed) },
            disconnect: { id in self.disconnected.withLock { $0.append(id) } })
    }

    var shutdownCount: Int { shutdowns.load(ordering: .relaxed) }
}

/// A provider whose list, default export and descriptions are set by the test.
struct ListingProvider: BackendProvider {
    var exports: [ExportEntry]
    var defaultName: String

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> MemoryBackend {
        try await MemoryBackendProvider(size: 1 << 20).open(connection)
    }

    func listExports(_ connection: ConnectionInfo) async throws(NBDError) -> [ExportEntry] { exports }
    func defaultExport(_ connection: ConnectionInfo) async throws(NBDError) -> String { defaultName }
}

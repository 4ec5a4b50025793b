import Benchmark
import BenchmarkSupport
import NBDCore

#if canImport(Glibc)
import Glibc
#endif

// The multi-conn flush fan-out in emulate mode. Each iteration makes N connections dirty (one 4 KiB
// write on each; the backend's write does nothing) and then flushes one of them, which in emulate
// mode flushes all N connections below the filter, concurrently. Measured for N = 1, 2, 4, 8, 16 over
// a backend whose flush
//   - costs nothing;
//   - takes 1 ms by suspending (`Task.sleep`), as an async backend waiting on a remote peer would;
//   - takes 1 ms by blocking its thread (`usleep`), as a backend calling `fdatasync` would.
// The blocking flush is measured requested from a task on the global executor (2 threads on this
// machine; the benchmark runner keeps one of them busy), requested from a task that prefers a
// dedicated 16-thread executor (what nbd-serve does: flushes in emulate mode are slow operations and
// run on its slow-operation pool, 16 threads by default; the fan-out's children inherit it) or a
// 4-thread one, and with a 4- or 16-thread executor passed as `MultiConn(_:flushExecutor:)`.
// The target is the 1 ms flush over 8 dirty connections in at most 2 ms.

enum FlushCost: Sendable {
    case free
    case suspend1ms
    case block1ms

    var label: String {
        switch self {
        case .free: "free flush"
        case .suspend1ms: "1 ms flush (Task.sleep)"
        case .block1ms: "1 ms flush (blocking usleep)"
        }
    }
}

/// A backend with no multi-conn of its own (as one with a per-connection cache), whose flush costs
/// what the benchmark asks for.
struct FlushCostBackend: BlockBackend {
    let cost: FlushCost
    let capabilities = Capabilities(size: 1 << 30, canFlush: true, fua: .native, canMultiConn: false)

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    func flush(flags: CommandFlags) async throws(NBDError) {
        switch cost {
        case .free:
            return
        case .suspend1ms:
            try? await Task.sleep(for: .milliseconds(1))
        case .block1ms:
            usleep(1000)
        }
    }
}

/// The filters of one fan-out benchmark's connections, opened in setup.
final class ConnectionsHolder: @unchecked Sendable {
    var filters: [MultiConnFilter<FlushCostBackend>] = []
}

/// The data every write sends; the backend never reads it.
nonisolated(unsafe) let sharedData = UnsafeRawBufferPointer(
    UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64))

/// Where the fan-out's flushes run.
enum FanOutPlacement: Sendable {
    /// The flush is requested from a task with no executor preference.
    case global
    /// The flush is requested from a task that prefers `executor`, as nbd-serve's slow-operation pool does.
    case preference(any TaskExecutor)
    /// `executor` is passed to `MultiConn(_:flushExecutor:)`.
    case flushExecutor(any TaskExecutor)
}

func registerFanOut(connections: Int, cost: FlushCost, placement: FanOutPlacement, executorLabel: String) {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .instructions, .mallocCountTotal, .cpuTotal],
        timeUnits: .microseconds,
        warmupIterations: 5,
        scalingFactor: .one,
        maxDuration: .seconds(1),
        maxIterations: cost == .free ? 20_000 : 400
    )
    let holder = ConnectionsHolder()
    let name = "emulate flush, \(connections) dirty, \(cost.label)\(executorLabel)"
    Benchmark(name, configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            for filter in holder.filters {
                try await filter.write(sharedData, at: 0, flags: [])
            }
            if case .preference(let executor) = placement {
                try await withTaskExecutorPreference(executor) {
                    try await holder.filters[0].flush(flags: [])
                }
            } else {
                try await holder.filters[0].flush(flags: [])
            }
        }
    } setup: {
        let multiConn: MultiConn
        if case .flushExecutor(let executor) = placement {
            multiConn = MultiConn(MultiConnConfiguration(mode: .emulate), flushExecutor: executor)
        } else {
            multiConn = MultiConn(MultiConnConfiguration(mode: .emulate))
        }
        var filters: [MultiConnFilter<FlushCostBackend>] = []
        for _ in 0..<connections {
            filters.append(try await multiConn.filter(wrapping: FlushCostBackend(cost: cost), for: ConnectionInfo()))
        }
        holder.filters = filters
    } teardown: {
        for filter in holder.filters { await filter.close() }
        holder.filters = []
    }
}

let benchmarks: @Sendable () -> Void = {
    let slowPool = ThreadPoolExecutor(threads: 4)
    let widePool = ThreadPoolExecutor(threads: 16)
    for connections in [1, 2, 4, 8, 16] {
        registerFanOut(connections: connections, cost: .free, placement: .global, executorLabel: "")
        registerFanOut(connections: connections, cost: .suspend1ms, placement: .global, executorLabel: "")
        registerFanOut(connections: connections, cost: .block1ms, placement: .global, executorLabel: ", global executor")
        registerFanOut(
            connections: connections, cost: .block1ms, placement: .preference(slowPool),
            executorLabel: ", requested from a 4-thread executor")
        registerFanOut(
            connections: connections, cost: .block1ms, placement: .preference(widePool),
            executorLabel: ", requested from a 16-thread executor (as nbd-serve)")
        registerFanOut(
            connections: connections, cost: .block1ms, placement: .flushExecutor(slowPool),
            executorLabel: ", 4-thread flushExecutor")
        registerFanOut(
            connections: connections, cost: .block1ms, placement: .flushExecutor(widePool),
            executorLabel: ", 16-thread flushExecutor")
    }
}

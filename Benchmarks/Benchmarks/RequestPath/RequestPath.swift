import Benchmark
import NBDBackends
import NBDCore
import NBDFUAFilter
import NBDLogFilter
import NBDStatsFilter

// One 4 KiB read and one 4 KiB write per iteration (scaled by 1000), through
//   (a) the bare memory backend,
//   (b) multi-conn + stats + fua composed statically (`BackendProvider.wrapped`, one nested generic type),
//   (c) the same three filters composed at run time from a list (`FilterStack`, `any BlockBackend` per layer).
// The stack order is the one `nbd-serve --filter=multi-conn --filter=stats --filter=fua memory 1G`
// builds: client → multi-conn → stats → fua → memory. Every option is nbdkit's default (multi-conn
// auto, which over the memory backend resolves to plugin mode; fuamode=none).
//
// Steady state: the 1 MiB the benchmark cycles through is written once before measuring, so no
// iteration allocates a page, and every buffer is allocated outside the measured loop.

/// The blocks an iteration cycles through: 256 × 4 KiB = 1 MiB, which stays in the L2 cache, so that
/// the difference between the stacks is the filters' cost rather than cache misses.
let blockSize = 4096
let blockCount = 256

let metrics: [BenchmarkMetric] = [.wallClock, .instructions, .mallocCountTotal, .cpuTotal, .throughput]

/// Opens one connection's stack and fills the region the benchmark reads.
func prepare<Provider: BackendProvider>(_ provider: Provider) async throws -> Provider.Backend {
    let backend = try await provider.open(ConnectionInfo(exportName: ""))
    let data = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 64)
    defer { data.deallocate() }
    for index in 0..<blockSize { data[index] = UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
    for block in 0..<blockCount {
        try await backend.write(UnsafeRawBufferPointer(data), at: UInt64(block * blockSize), flags: [])
    }
    return backend
}

/// Registers the read and the write benchmark for one stack. `open` runs in the setup hook, outside
/// the measurement.
func registerReadWrite<Backend: BlockBackend>(
    _ label: String,
    configuration: Benchmark.Configuration,
    open: @escaping @Sendable () async throws -> Backend
) {
    let holder = BackendHolder<Backend>()
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 64)
    let box = SendableBuffer(buffer)

    Benchmark("4 KiB read, \(label)", configuration: configuration) { benchmark in
        guard let backend = holder.backend else { fatalError("setup did not run") }
        var block = 0
        for _ in benchmark.scaledIterations {
            try await backend.read(into: box.buffer, at: UInt64(block &* blockSize), flags: [])
            block = (block &+ 1) & (blockCount - 1)
        }
        blackHole(box.buffer[0])
    } setup: {
        holder.backend = try await open()
    } teardown: {
        await holder.backend?.close()
        holder.backend = nil
    }

    Benchmark("4 KiB write, \(label)", configuration: configuration) { benchmark in
        guard let backend = holder.backend else { fatalError("setup did not run") }
        let data = UnsafeRawBufferPointer(box.buffer)
        var block = 0
        for _ in benchmark.scaledIterations {
            try await backend.write(data, at: UInt64(block &* blockSize), flags: [])
            block = (block &+ 1) & (blockCount - 1)
        }
    } setup: {
        holder.backend = try await open()
    } teardown: {
        await holder.backend?.close()
        holder.backend = nil
    }
}

let benchmarks: @Sendable () -> Void = {
    let configuration = Benchmark.Configuration(
        metrics: metrics,
        timeUnits: .nanoseconds,
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )

    // (a) The bare memory backend.
    registerReadWrite("memory", configuration: configuration) {
        try await prepare(try MemoryBackendProvider(size: 1 << 30))
    }

    // (b) multi-conn + stats + fua, composed statically: the backend type is
    // MultiConnFilter<StatsFilter<FUAFilter<MemoryBackend>>>.
    registerReadWrite("multi-conn+stats+fua static", configuration: configuration) {
        let multiConn = MultiConn()
        let stats = StatsCollector()
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, connection throws(NBDError) in try FUAFilter(wrapping: next, connection: connection) }
            .wrapped { next, _ in StatsFilter(wrapping: next, collector: stats) }
            .wrapped { next, connection throws(NBDError) in try await multiConn.filter(wrapping: next, for: connection) }
        return try await prepare(provider)
    }

    // (c) The same three filters from a list, as the command line builds them.
    registerReadWrite("multi-conn+stats+fua FilterStack", configuration: configuration) {
        let provider = FilterStack(
            [MultiConnLayer(), StatsLayer(collector: StatsCollector()), FUALayer()],
            over: try MemoryBackendProvider(size: 1 << 30))
        return try await prepare(provider)
    }

    // (d) The log filter without a log file, composed statically: a filter that only passes
    // requests through must cost about nothing (compare with (a)).
    registerReadWrite("log without a file static", configuration: configuration) {
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, connection in LogFilter(wrapping: next, file: nil, connection: connection) }
        return try await prepare(provider)
    }

    registerStatsContention()
    registerPassThroughFilters(configuration: configuration)
}

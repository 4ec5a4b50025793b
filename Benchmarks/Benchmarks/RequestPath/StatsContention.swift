import Benchmark
import BenchmarkSupport
import NBDCore
import NBDStatsFilter

// The stats filter's hot path over a backend that does nothing: one 4 KiB read counted per iteration
// (scaled by 1000), from one task, and from 2 concurrent tasks that each make every iteration's
// reads (so an iteration is 2 reads in parallel). The 2 tasks run on a 2-thread executor of their
// own, so they really run at the same time on the 2 cores (the benchmark runner keeps one of the 2
// cooperative-pool threads busy, which would otherwise run them one after the other). With 2 connections each task counts into its own
// connection's counters, as the server does; with 1 connection both tasks share one block of
// counters, the worst case for cache-line sharing (NBD clients may pipeline requests on one
// connection, and the server may run them concurrently when a backend declares slow operations).

func registerStatsContention() {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .instructions, .mallocCountTotal, .cpuTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )
    let buffer = SendableBuffer(UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 64))
    let threads = ThreadPoolExecutor(threads: 2)

    Benchmark("stats hot path, 1 task", configuration: configuration) { benchmark in
        let filter = StatsFilter(wrapping: NullBackend(), collector: StatsCollector())
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try await filter.read(into: buffer.buffer, at: 0, flags: [])
        }
        benchmark.stopMeasurement()
        await filter.close()
    }

    Benchmark("stats hot path, 1 task on the 2-thread executor", configuration: configuration) { benchmark in
        let filter = StatsFilter(wrapping: NullBackend(), collector: StatsCollector())
        let count = benchmark.scaledIterations.count
        benchmark.startMeasurement()
        await runConcurrently([filter], count: count, buffer: buffer, on: threads)
        benchmark.stopMeasurement()
        await filter.close()
    }

    Benchmark("stats hot path, 2 tasks, 2 connections", configuration: configuration) { benchmark in
        let collector = StatsCollector()
        let filters = [
            StatsFilter(wrapping: NullBackend(), collector: collector),
            StatsFilter(wrapping: NullBackend(), collector: collector),
        ]
        let count = benchmark.scaledIterations.count
        benchmark.startMeasurement()
        await runConcurrently(filters, count: count, buffer: buffer, on: threads)
        benchmark.stopMeasurement()
        for filter in filters { await filter.close() }
    }

    Benchmark("stats hot path, 2 tasks, 1 connection", configuration: configuration) { benchmark in
        let filter = StatsFilter(wrapping: NullBackend(), collector: StatsCollector())
        let count = benchmark.scaledIterations.count
        benchmark.startMeasurement()
        await runConcurrently([filter, filter], count: count, buffer: buffer, on: threads)
        benchmark.stopMeasurement()
        await filter.close()
    }
}

/// Runs `count` reads through each filter, one child task per filter, on `executor`.
func runConcurrently(
    _ filters: [StatsFilter<NullBackend>], count: Int, buffer: SendableBuffer, on executor: any TaskExecutor
) async {
    await withTaskGroup(of: Void.self) { group in
        for filter in filters {
            group.addTask(executorPreference: executor) {
                for _ in 0..<count {
                    try? await filter.read(into: buffer.buffer, at: 0, flags: [])
                }
            }
        }
    }
}

import Benchmark
import NBDBackends
import NBDCore
import NBDFeatureFilters
import NBDFlowFilters
import NBDRangeFilters
import NBDStatsFilter

// Filters that only pass a request through when configured so, each composed statically over the
// memory backend (one nested generic type), for the target of at most 50 ns added and no
// allocation per 4 KiB read or write:
//   delay with every delay 0, rate with no limit set (nbdkit refuses rate=0; leaving it out is how a
//   rate filter passes everything), offset (a non-zero offset, so the addition is real), noparallel
//   serialize=requests with one connection (an uncontended lock per request), and all four stacked;
//   nofilter (static, and at run time, where its layer hands the layer below back), rotational
//   (a capability only) and count (one relaxed atomic add per request).
func registerPassThroughFilters(configuration: Benchmark.Configuration) {
    registerReadWrite("nofilter static", configuration: configuration) {
        let provider = try MemoryBackendProvider(size: 1 << 30).wrapped { next, _ in NoFilter(wrapping: next) }
        return try await prepare(provider)
    }

    registerReadWrite("empty FilterStack", configuration: configuration) {
        let provider = FilterStack([], over: try MemoryBackendProvider(size: 1 << 30))
        return try await prepare(provider)
    }

    registerReadWrite("nofilter FilterStack", configuration: configuration) {
        let provider = FilterStack([NoFilterLayer()], over: try MemoryBackendProvider(size: 1 << 30))
        return try await prepare(provider)
    }

    registerReadWrite("rotational static", configuration: configuration) {
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, _ in RotationalFilter(wrapping: next) }
        return try await prepare(provider)
    }

    registerReadWrite("count static", configuration: configuration) {
        let counts = ByteCounts()
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, _ in CountFilter(wrapping: next, counts: counts) }
        return try await prepare(provider)
    }

    registerReadWrite("delay 0 static", configuration: configuration) {
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, _ in DelayFilter(wrapping: next, delays: Delays()) }
        return try await prepare(provider)
    }

    registerReadWrite("rate unset static", configuration: configuration) {
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, _ in RateFilter(wrapping: next, shared: nil, connection: nil) }
        return try await prepare(provider)
    }

    registerReadWrite("offset static", configuration: configuration) {
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, _ throws(NBDError) in try OffsetFilter(wrapping: next, offset: 1 << 20) }
        return try await prepare(provider)
    }

    registerReadWrite("noparallel 1 connection static", configuration: configuration) {
        let shared = AsyncLock()
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, _ in await NoParallelFilter(wrapping: next, mode: .requests, sharedLock: shared) }
        return try await prepare(provider)
    }

    registerReadWrite("delay+rate+offset+noparallel static", configuration: configuration) {
        let shared = AsyncLock()
        let provider = try MemoryBackendProvider(size: 1 << 30)
            .wrapped { next, _ in DelayFilter(wrapping: next, delays: Delays()) }
            .wrapped { next, _ in RateFilter(wrapping: next, shared: nil, connection: nil) }
            .wrapped { next, _ throws(NBDError) in try OffsetFilter(wrapping: next, offset: 1 << 20) }
            .wrapped { next, _ in await NoParallelFilter(wrapping: next, mode: .requests, sharedLock: shared) }
        return try await prepare(provider)
    }
}

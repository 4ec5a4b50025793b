import NBDCore
import NBDStatsFilter
import NBDTestSupport
import Synchronization

/// A clock for deterministic reports: every reading is `step` nanoseconds after the previous one, so a
/// request timed with two readings takes exactly `step`, and the tests can also jump it forward.
final class SteppingClock: Sendable {
    let ticks = Atomic<UInt64>(0)
    let step: UInt64

    init(step: UInt64 = 1_000) { self.step = step }

    var clock: StatsClock {
        .manual { [self] in self.ticks.wrappingAdd(self.step, ordering: .relaxed).newValue }
    }

    func advance(by nanoseconds: UInt64) {
        ticks.wrappingAdd(nanoseconds, ordering: .relaxed)
    }
}

/// One connection's stack for stats tests: stats over a ``TestMemoryBackend``.
func makeStatsStack(
    _ collector: StatsCollector, size: UInt64 = 4 << 20
) -> (StatsFilter<TestMemoryBackend>, TestMemoryBackend) {
    let backend = TestMemoryBackend(capabilities: Capabilities(size: size, cache: .native, canExtents: true))
    return (StatsFilter(wrapping: backend, collector: collector), backend)
}

extension BlockBackend {
    /// Writes `count` bytes of `byte` at `offset`.
    func write(count: Int, at offset: UInt64, byte: UInt8 = 0x55, flags: CommandFlags = []) async throws(NBDError) {
        try await writeBytes([UInt8](repeating: byte, count: count), at: offset, flags: flags)
    }

    /// The reference's larger workload, write part: 20 × 4 KiB at i × 4 KiB, 3 × 64 KiB at 1, 2 and
    /// 3 MiB, and 512 bytes at 512.
    func referenceWrites() async throws(NBDError) {
        for i in 0..<20 { try await write(count: 4096, at: UInt64(i) * 4096) }
        for m in 1...3 { try await write(count: 65536, at: UInt64(m) << 20) }
        try await write(count: 512, at: 512)
    }
}

/// The lines of `report` from the line starting with `prefix` up to the next blank line (inclusive of
/// neither the blank line nor anything after it).
func section(_ report: String, startingWith prefix: String) -> [String] {
    let lines = report.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard let start = lines.firstIndex(where: { $0.hasPrefix(prefix) }) else { return [] }
    var result: [String] = []
    for line in lines[start...] {
        if line.isEmpty { break }
        result.append(line)
    }
    return result
}

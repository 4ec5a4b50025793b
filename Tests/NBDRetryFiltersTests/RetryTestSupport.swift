import Foundation
import NBDBackends
import NBDCore
import NBDTestSupport
import Synchronization

/// A memory export that counts how its backends are opened and closed, and can refuse the first opens.
final class CountingProvider: BackendProvider, Sendable {
    let memory: MemoryBackendProvider
    let opens = Atomic<Int>(0)
    let closes = Atomic<Int>(0)
    let readOnlyOpens = Atomic<Int>(0)
    /// While set, every backend's flush fails with EIO.
    let failsFlushes = Atomic<Bool>(false)
    let refusedOpens: Int

    init(size: UInt64 = 1 << 20, refusingFirst refusedOpens: Int = 0) throws {
        memory = try MemoryBackendProvider(size: size)
        self.refusedOpens = refusedOpens
    }

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> CountingBackend {
        let count = opens.wrappingAdd(1, ordering: .relaxed).newValue
        if connection.isReadOnly { readOnlyOpens.wrappingAdd(1, ordering: .relaxed) }
        if count <= refusedOpens { throw NBDError(.ioError, "refusing open number \(count)") }
        return CountingBackend(next: try await memory.open(connection), provider: self)
    }
}

struct CountingBackend: Filter {
    let next: MemoryBackend
    let provider: CountingProvider
    func flush(flags: CommandFlags) async throws(NBDError) {
        if provider.failsFlushes.load(ordering: .relaxed) { throw NBDError(.ioError, "flush failed on purpose") }
        try await next.flush(flags: flags)
    }

    func close() async {
        provider.closes.wrappingAdd(1, ordering: .relaxed)
        await next.close()
    }
}

/// Counts every request that passes through it (every attempt of a retried request, when placed
/// below a retry filter) and lets a test act on the n-th one before it goes down, for example
/// remove the error filter's trigger file so that attempt succeeds.
final class AttemptCounter: Sendable {
    let count = Atomic<Int>(0)
    let action: @Sendable (Int, Command, CommandFlags) throws(NBDError) -> Void

    init(_ action: @escaping @Sendable (Int, Command, CommandFlags) throws(NBDError) -> Void = { _, _, _ in }) {
        self.action = action
    }

    /// An action that deletes `path` at attempt `n`.
    static func removing(_ path: String, atAttempt n: Int) -> AttemptCounter {
        AttemptCounter { attempt, _, _ in
            if attempt == n { try? FileManager.default.removeItem(atPath: path) }
        }
    }

    func record(_ command: Command, _ flags: CommandFlags) throws(NBDError) {
        let attempt = count.wrappingAdd(1, ordering: .relaxed).newValue
        try action(attempt, command, flags)
    }
}

struct AttemptCountingFilter<Next: BlockBackend>: Filter {
    let next: Next
    let counter: AttemptCounter
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        try counter.record(.read, flags)
        try await next.read(into: buffer, at: offset, flags: flags)
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try counter.record(.write, flags)
        try await next.write(data, at: offset, flags: flags)
    }
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try counter.record(.writeZeroes, flags)
        try await next.zero(count: count, at: offset, flags: flags)
    }
    func flush(flags: CommandFlags) async throws(NBDError) {
        try counter.record(.flush, flags)
        try await next.flush(flags: flags)
    }
}

struct AttemptCountingLayer: FilterLayer {
    let counter: AttemptCounter
    var name: String { "attempts" }
    func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        AnyBlockBackend(AttemptCountingFilter(next: next, counter: counter))
    }
}

/// A path for an error filter trigger file, created now.
func makeTrigger() -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("retry-fault-\(UUID().uuidString)").path
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    return path
}

/// Holds reads at offset 4096 at a gate, to keep a request running on one backend.
struct GateFilter<Next: BlockBackend>: Filter {
    let next: Next
    let gate: AsyncGate
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        if offset == 4096 { await gate.pass() }
        try await next.read(into: buffer, at: offset, flags: flags)
    }
}

struct GateLayer: FilterLayer {
    let gate: AsyncGate
    var name: String { "gate" }
    func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        AnyBlockBackend(GateFilter(next: next, gate: gate))
    }
}

import NBDCore
import NBDTestSupport
import Synchronization

/// A backend whose reads wait at a gate and count how many run at once, to see serialization
/// without timing.
final class GatedBackend: BlockBackend {
    let capabilities = Capabilities(size: 1 << 20, slowOperations: [.flush])
    let gate: AsyncGate
    private let inFlight = Atomic<Int>(0)
    private let maximum = Atomic<Int>(0)

    init(gate: AsyncGate) { self.gate = gate }

    /// The most reads that were inside the backend at once.
    var maximumInFlight: Int { maximum.load(ordering: .relaxed) }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        let now = inFlight.wrappingAdd(1, ordering: .relaxed).newValue
        var seen = maximum.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = maximum.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = original
        }
        await gate.pass()
        inFlight.wrappingSubtract(1, ordering: .relaxed)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
}

/// A clock that moves only when a test's sleep moves it, and records every sleep.
final class ManualClock: Sendable {
    private let state = LockedValue<(now: Duration, sleeps: [Duration])>((.seconds(1000), []))

    var now: Duration { state.withLock { $0.now } }
    var sleeps: [Duration] { state.withLock { $0.sleeps } }

    func advance(by duration: Duration) {
        state.withLock { $0.now += duration }
    }

    /// Records `duration` and moves the clock by it, as if the sleep happened.
    func sleep(_ duration: Duration) {
        state.withLock {
            $0.sleeps.append(duration)
            $0.now += duration
        }
    }
}

/// Reads `count` bytes from `backend` with a buffer of its own.
func read(_ backend: some BlockBackend, count: Int = 512) async throws(NBDError) {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
    defer { buffer.deallocate() }
    try await backend.read(into: buffer, at: 0, flags: [])
}

/// Values appended from several tasks.
final class Recorder<Value: Sendable>: Sendable {
    private let state = LockedValue<[Value]>([])
    func append(_ value: Value) { state.withLock { $0.append(value) } }
    var values: [Value] { state.withLock { $0 } }
}

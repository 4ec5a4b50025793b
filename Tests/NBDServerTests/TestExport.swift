import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A gate a backend operation waits at until the test opens it, and that tells the test when an
/// operation has arrived: deterministic stepping instead of sleeps.
final class Gate: Sendable {
    private struct State {
        var isOpen = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = LockedValue(State())
    private let arrivals = DispatchSemaphore(value: 0)

    /// Called by the backend: records the arrival and suspends until ``open()``.
    func pass() async {
        arrivals.signal()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let open = state.withLock { state -> Bool in
                if state.isOpen { return true }
                state.waiters.append(continuation)
                return false
            }
            if open { continuation.resume() }
        }
    }

    /// Blocks the test until an operation has arrived at the gate.
    func waitForArrival(file: StaticString = #filePath, line: UInt = #line) {
        arrivals.waitOrFail("an operation to arrive at the gate", file: file, line: line)
    }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.isOpen = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// What a test export records; shared by the provider and every backend it opened.
final class TestExportState: Sendable {
    let data: LockedValue<[UInt8]>
    let opens = Atomic<Int>(0)
    let closes = Atomic<Int>(0)
    let shutdowns = Atomic<Int>(0)
    let flushes = Atomic<Int>(0)
    /// The number of opens still to fail.
    let failingOpens = Atomic<Int>(0)
    let exportNames = LockedValue<[String]>([])
    let lastWriteFlags = LockedValue<CommandFlags>([])
    let flushGate: Gate?
    /// The threads (`pthread_self()`) that ran each read and each flush, in order, so a test can
    /// tell whether a flush ran on the connection's thread (as reads always do) or on the pool.
    let readThreads = LockedValue<[UInt]>([])
    let flushThreads = LockedValue<[UInt]>([])
    /// How long each flush keeps its thread busy (a device that takes this long to sync).
    let flushBusyTime = LockedValue<Duration>(.zero)

    init(size: Int, flushGate: Gate? = nil) {
        data = LockedValue([UInt8](repeating: 0, count: size))
        self.flushGate = flushGate
    }
}

/// A tiny in-memory export with configurable capabilities. Block status reports the first half of
/// the export as data and the second half as a hole.
struct TestProvider: BackendProvider {
    let state: TestExportState
    let capabilities: Capabilities

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> TestBackend {
        state.exportNames.withLock { $0.append(connection.exportName) }
        if state.failingOpens.load(ordering: .relaxed) > 0 {
            state.failingOpens.subtract(1, ordering: .relaxed)
            throw NBDError(.ioError, "the test export refuses this open")
        }
        state.opens.add(1, ordering: .relaxed)
        var caps = capabilities
        if connection.isReadOnly { caps = caps.readOnly }
        return TestBackend(state: state, capabilities: caps)
    }

    func shutdown() async {
        state.shutdowns.add(1, ordering: .relaxed)
    }
}

struct TestBackend: BlockBackend {
    let state: TestExportState
    let capabilities: Capabilities

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        state.readThreads.withLock { $0.append(UInt(pthread_self())) }
        state.data.withLock { data in
            data.withUnsafeBytes { source in
                buffer.copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: source[Int(offset)..<(Int(offset) + buffer.count)]))
            }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        state.lastWriteFlags.withLock { $0 = flags }
        state.data.withLock { data in
            data.withUnsafeMutableBytes { target in
                UnsafeMutableRawBufferPointer(rebasing: target[Int(offset)..<(Int(offset) + bytes.count)]).copyMemory(
                    from: bytes)
            }
        }
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if flags.contains(.fastZero) {
            throw NBDError(.notSupported, "zeroing is never fast here")
        }
        state.data.withLock { data in
            for index in Int(offset)..<Int(offset + count) { data[index] = 0 }
        }
    }

    func flush(flags: CommandFlags) async throws(NBDError) {
        if let gate = state.flushGate { await gate.pass() }
        state.flushThreads.withLock { $0.append(UInt(pthread_self())) }
        let busy = state.flushBusyTime.withLock { $0 }
        if busy > .zero {
            // Computes instead of sleeping: the thread stays occupied, as in a blocking fdatasync.
            let end = ContinuousClock.now + busy
            while ContinuousClock.now < end {}
        }
        state.flushes.add(1, ordering: .relaxed)
    }

    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let half = capabilities.size / 2
        if offset >= half { return [.hole(count)] }
        return [.data(half - offset), .hole(capabilities.size - half)]
    }

    func close() async {
        state.closes.add(1, ordering: .relaxed)
    }
}

import Foundation
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Holds reads of a ``SuspendingBackend`` suspended until the test resumes them, one by one and in
/// any order, and records what happened to each: like a proxy whose upstream answers when the test
/// says so.
final class SuspendedReads: Sendable {
    private struct State {
        var held: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var releasedForever = false
        var inFlight = 0
        var maximumInFlight = 0
        var cancelled: Set<UInt64> = []
        /// The thread that started each read (offset → pthread_self) and the one it continued on.
        var startThreads: [UInt64: UInt] = [:]
        var resumeThreads: [UInt64: UInt] = [:]
    }

    private let state = LockedValue(State())
    private let arrivals = DispatchSemaphore(value: 0)
    private let cancellations = DispatchSemaphore(value: 0)
    let closes = Atomic<Int>(0)
    /// The threads that ran each write (writes do not suspend: they run inline).
    let writeThreads = LockedValue<[UInt]>([])

    /// Called by the backend: suspends until ``resume(_:)`` for `offset`.
    func suspend(at offset: UInt64) async {
        state.withLock { state in
            state.startThreads[offset] = UInt(pthread_self())
            state.inFlight += 1
            state.maximumInFlight = max(state.maximumInFlight, state.inFlight)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let passNow = state.withLock { state -> Bool in
                    if state.releasedForever { return true }
                    state.held[offset] = continuation
                    return false
                }
                arrivals.signal()
                if passNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { _ = $0.cancelled.insert(offset) }
            cancellations.signal()
        }
        state.withLock { state in
            state.resumeThreads[offset] = UInt(pthread_self())
            state.inFlight -= 1
        }
    }

    /// Waits (bounded) until `count` more reads are suspended.
    func waitForArrivals(_ count: Int, file: StaticString = #filePath, line: UInt = #line) {
        for index in 0..<count {
            guard arrivals.waitOrFail("suspended read \(index + 1) of \(count)", file: file, line: line) else { return }
        }
    }

    /// Waits (bounded) until `count` more suspended reads saw their task cancelled.
    func waitForCancellations(_ count: Int, file: StaticString = #filePath, line: UInt = #line) {
        for index in 0..<count {
            guard cancellations.waitOrFail("cancellation \(index + 1) of \(count)", file: file, line: line) else {
                return
            }
        }
    }

    /// Resumes the read at `offset`; fails the test if it is not suspended.
    func resume(_ offset: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        guard let continuation = state.withLock({ $0.held.removeValue(forKey: offset) }) else {
            return XCTFail("no read is suspended at \(offset)", file: file, line: line)
        }
        continuation.resume()
    }

    /// Resumes the read at `offset` from a new thread marked for inline resumption, as the NBD
    /// client's reply reader is, and returns that thread's ID once the resumed code has run.
    func resumeFromMarkedThread(_ offset: UInt64, file: StaticString = #filePath, line: UInt = #line) -> UInt? {
        guard let continuation = state.withLock({ $0.held.removeValue(forKey: offset) }) else {
            XCTFail("no read is suspended at \(offset)", file: file, line: line)
            return nil
        }
        let done = DispatchSemaphore(value: 0)
        let thread = LockedValue<UInt>(0)
        let worker = Thread {
            thread.withLock { $0 = UInt(pthread_self()) }
            InlineResumption.withScope { continuation.resume() }
            done.signal()
        }
        worker.start()
        guard done.waitOrFail("the marked thread to resume the read", file: file, line: line) else { return nil }
        return thread.withLock { $0 }
    }

    /// Resumes every suspended read and lets later ones pass: after a failed test, so that the
    /// server can still shut down.
    func releaseEverything() {
        let held = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.releasedForever = true
            defer { state.held = [:] }
            return Array(state.held.values)
        }
        for continuation in held { continuation.resume() }
    }

    var maximumInFlight: Int { state.withLock { $0.maximumInFlight } }
    var cancelled: Set<UInt64> { state.withLock { $0.cancelled } }
    func startThread(_ offset: UInt64) -> UInt? { state.withLock { $0.startThreads[offset] } }
    func resumeThread(_ offset: UInt64) -> UInt? { state.withLock { $0.resumeThreads[offset] } }
}

/// Reads suspend (``SuspendedReads``) and are declared suspending; everything else is served at
/// once from memory filled with `UInt8(offset / 512)` per 512-byte block.
struct SuspendingBackend: BlockBackend {
    let reads: SuspendedReads
    let capabilities: Capabilities

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        await reads.suspend(at: offset)
        for index in 0..<buffer.count { buffer[index] = UInt8(truncatingIfNeeded: (offset + UInt64(index)) / 512) }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        reads.writeThreads.withLock { $0.append(UInt(pthread_self())) }
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func flush(flags: CommandFlags) async throws(NBDError) {}

    func close() async {
        reads.closes.add(1, ordering: .relaxed)
    }
}

struct SuspendingProvider: BackendProvider {
    let reads: SuspendedReads

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> SuspendingBackend {
        SuspendingBackend(
            reads: reads, capabilities: Capabilities(size: 1 << 20, suspendingOperations: [.read]))
    }
}

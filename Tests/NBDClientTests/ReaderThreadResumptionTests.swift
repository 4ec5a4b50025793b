import NBDBackends
import NBDClient
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

/// An executor like nbd-serve's for suspending requests: runs a job where the thread is marked for
/// inline resumption, and hands it to the global executor otherwise; counts both.
private final class CountingInlineExecutor: TaskExecutor {
    let ranInline = Atomic<Int>(0)
    let handedOn = Atomic<Int>(0)

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if InlineResumption.mayRunEnqueuedJob() {
            ranInline.add(1, ordering: .relaxed)
            InlineResumption.run(unowned, on: asUnownedTaskExecutor())
        } else {
            handedOn.add(1, ordering: .relaxed)
            globalConcurrentExecutor.enqueue(unowned)
        }
    }
}

/// The reply reader continues a caller that allows it on its own thread, and a request issued from
/// there first moves off it.
final class ReaderThreadResumptionTests: ClientTestCase {
    private static let reads = 20

    /// Issues ``reads`` reads one after the other from a task on a ``CountingInlineExecutor``: each
    /// after the first is issued from wherever the one before continued.
    private func readsInARow(_ configuration: ClientConfiguration) async throws -> CountingInlineExecutor {
        let path = try startMemoryServer(try MemoryBackendProvider(size: 1 << 20))
        let connection = try await NBDConnection.connect(to: .unix(path), configuration: configuration)
        let executor = CountingInlineExecutor()
        try await connection.write(Array(repeating: 5, count: 4096), at: 0)
        let count = Self.reads
        let task = Task(executorPreference: executor) { () async throws -> Int in
            var matching = 0
            for _ in 0..<count where try await connection.read(count: 512, at: 0) == Array(repeating: 5, count: 512) {
                matching += 1
            }
            return matching
        }
        let matching = try await withBoundedWait("\(count) reads") { try await task.value }
        XCTAssertEqual(matching, count, "reads that returned the data written")
        await connection.disconnect()
        return executor
    }

    func testACallerContinuesOnTheReaderThreadAndItsNextRequestsComplete() async throws {
        let executor = try await readsInARow(ClientConfiguration())
        // A reply that arrives before its caller finished suspending lets the caller go on where it
        // is, without an enqueue (likely here: the server's thread may preempt the sender). Over 20
        // reads, some continue on the reader thread, and the reads they issue from there (which
        // first move off it) complete.
        XCTAssertGreaterThanOrEqual(
            executor.ranInline.load(ordering: .relaxed), 1,
            "no read continued on the reader thread (handed on: \(executor.handedOn.load(ordering: .relaxed)))")
    }

    func testTurnedOffTheReaderResumesNobodyInline() async throws {
        var configuration = ClientConfiguration()
        configuration.resumesCallersOnReaderThread = false
        let executor = try await readsInARow(configuration)
        XCTAssertEqual(executor.ranInline.load(ordering: .relaxed), 0)
        XCTAssertGreaterThanOrEqual(executor.handedOn.load(ordering: .relaxed), 1, "the start")
    }
}

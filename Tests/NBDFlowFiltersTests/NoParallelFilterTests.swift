import NBDCore
import NBDFlowFilters
import NBDTestSupport
import Synchronization
import XCTest

/// The noparallel filter's three modes, stepped with a gate in the layer below: a request that the
/// mode serializes waits for the lock (seen as a waiter), one it does not reaches the gate.
final class NoParallelFilterTests: XCTestCase {
    func testAsyncLockExcludesAndServesWaitersInOrder() async throws {
        let lock = AsyncLock()
        let order = Recorder<Int>()
        await lock.lock()
        var tasks: [Task<Void, Never>] = []
        for index in 0..<5 {
            tasks.append(
                Task {
                    await lock.lock()
                    order.append(index)
                    lock.unlock()
                })
            await waitUntil("task \(index) waits for the lock") { lock.waiterCount == index + 1 }
        }
        XCTAssertEqual(order.values, [], "nobody enters while the lock is held")
        lock.unlock()
        for task in tasks { await task.value }
        XCTAssertEqual(order.values, [0, 1, 2, 3, 4])
        XCTAssertTrue(lock.tryLock(), "the lock is free again")
    }

    func testRequestsModeSerializesOneConnectionsRequests() async throws {
        let gate = AsyncGate("reads")
        let backend = GatedBackend(gate: gate)
        let shared = AsyncLock()
        let filter = await NoParallelFilter(wrapping: backend, mode: .requests, sharedLock: shared)
        XCTAssertEqual(filter.capabilities.slowOperations, [], "everything runs inline, replies in order")
        let first = Task { try await read(filter) }
        await gate.waitForArrivals(1)
        let second = Task { try await read(filter) }
        await waitUntil("the second request waits for the first") { filter.requestLock.waiterCount == 1 }
        let arrivals = await gate.arrivals
        XCTAssertEqual(arrivals, 1)
        await gate.open()
        try await first.value
        try await second.value
        XCTAssertEqual(backend.maximumInFlight, 1)
    }

    func testRequestsModeLetsTwoConnectionsRunAtOnce() async throws {
        let gate = AsyncGate("reads")
        let backend = GatedBackend(gate: gate)
        let layer = NoParallelLayer(mode: .requests)
        let one = try await layer.wrap(AnyBlockBackend(backend), for: ConnectionInfo())
        let two = try await layer.wrap(AnyBlockBackend(backend), for: ConnectionInfo())
        let first = Task { try await read(one) }
        let second = Task { try await read(two) }
        await gate.waitForArrivals(2)
        await gate.open()
        try await first.value
        try await second.value
        XCTAssertEqual(backend.maximumInFlight, 2)
    }

    func testAllRequestsModeSerializesAcrossConnections() async throws {
        let gate = AsyncGate("reads")
        let backend = GatedBackend(gate: gate)
        let shared = AsyncLock()
        let one = await NoParallelFilter(wrapping: backend, mode: .allRequests, sharedLock: shared)
        let two = await NoParallelFilter(wrapping: backend, mode: .allRequests, sharedLock: shared)
        let first = Task { try await read(one) }
        await gate.waitForArrivals(1)
        let second = Task { try await read(two) }
        await waitUntil("the other connection's request waits") { shared.waiterCount == 1 }
        await gate.open()
        try await first.value
        try await second.value
        XCTAssertEqual(backend.maximumInFlight, 1)
    }

    func testConnectionsModeAdmitsTheNextClientOnlyAfterTheFirstCloses() async throws {
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20, canMultiConn: true))
        let shared = AsyncLock()
        let first = await NoParallelFilter(wrapping: backend, mode: .connections, sharedLock: shared)
        XCTAssertFalse(first.capabilities.canMultiConn)
        let opened = Recorder<Bool>()
        let second = Task {
            let filter = await NoParallelFilter(wrapping: backend, mode: .connections, sharedLock: shared)
            opened.append(true)
            await filter.close()
        }
        await waitUntil("the second client waits in open") { shared.waiterCount == 1 }
        XCTAssertEqual(opened.values, [])
        await first.close()
        await second.value
        XCTAssertEqual(opened.values, [true])
        XCTAssertTrue(shared.tryLock(), "the second close released the lock")
    }

    func testSerializeParameter() throws {
        XCTAssertEqual(try NoParallelLayer(parameters: ["serialize": "all-requests"]).mode, .allRequests)
        XCTAssertEqual(try NoParallelLayer(parameters: [:]).mode, .requests)
        XCTAssertThrowsError(try NoParallelLayer(parameters: ["serialize": "everything"])) { error in
            XCTAssertTrue("\(error)".contains("serialize=everything"), "\(error)")
        }
    }
}

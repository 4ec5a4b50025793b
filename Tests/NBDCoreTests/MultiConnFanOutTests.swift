import NBDBackends
@testable import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

/// The parts of the multi-conn filter that go beyond nbdkit: concurrent and coalesced fan-out,
/// failure handling, and connection lifetime.
final class MultiConnFanOutTests: XCTestCase {
    private func open(
        _ count: Int, _ provider: SharedMemoryTestProvider, _ coordinator: MultiConn
    ) async throws -> [MultiConnFilter<SharedMemoryTestProvider.Backend>] {
        var handles: [MultiConnFilter<SharedMemoryTestProvider.Backend>] = []
        for _ in 0..<count {
            let backend = try await provider.open(ConnectionInfo())
            handles.append(try await coordinator.filter(wrapping: backend, for: ConnectionInfo(id: backend.id)))
        }
        return handles
    }

    func testFanOutFlushesAllDirtyConnectionsConcurrently() async throws {
        let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: false)
        let coordinator = MultiConn(MultiConnConfiguration(mode: .emulate))
        let handles = try await open(4, provider, coordinator)
        for (i, handle) in handles.enumerated() {
            try await handle.writeBytes([UInt8(i)], at: UInt64(i))
        }
        // Every flush waits until all four have started: a serial fan-out would never get there.
        let barrier = AsyncGate(opensAfter: 4)
        provider.beforeFlush.withLock { $0 = { _ in await barrier.pass() } }
        try await handles[0].flush(flags: [])
        let arrivals = await barrier.arrivals
        XCTAssertEqual(arrivals, 4)
        XCTAssertEqual(provider.flushes.withLock { $0.values.reduce(0, +) }, 4)
    }

    func testFlushesArrivingDuringAFanOutShareTheNextRound() async throws {
        let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: false)
        let coordinator = MultiConn(MultiConnConfiguration(mode: .emulate))
        let handles = try await open(3, provider, coordinator)
        for handle in handles { try await handle.writeBytes([1], at: 0) }
        let gate = AsyncGate()
        let firstID = handles[0].member.id
        provider.beforeFlush.withLock { $0 = { id in if id == firstID { await gate.pass() } } }

        let first = Task { try await handles[0].flush(flags: []) }
        await gate.waitForArrivals(1)  // round 1 is under way and blocked
        // A write that completes during round 1 must be covered by the flushes that follow it.
        try await handles[1].writeBytes([2], at: 1)
        provider.beforeFlush.withLock { $0 = nil }
        let second = Task { try await handles[1].flush(flags: []) }
        let third = Task { try await handles[2].flush(flags: []) }
        await waitUntil("two flushes waiting for the next round") { await coordinator.waitingFlushCount() >= 2 }
        await gate.open()
        try await first.value
        try await second.value
        try await third.value

        let rounds = await coordinator.completedFanOuts
        XCTAssertEqual(rounds, 2, "the two flushes that arrived during round 1 must share round 2")
        let flushes = provider.flushes.withLock { $0 }
        // Connection 1: round 1 (it was dirty), round 1's second wave (it was used while the first
        // wave ran, so its cache may have been refilled from storage not yet updated), and round 2
        // (its write completed during round 1, and the flushes that followed must cover it).
        XCTAssertEqual(flushes[handles[1].member.id], 3)
        XCTAssertEqual(flushes[handles[0].member.id], 1)
        XCTAssertEqual(flushes[handles[2].member.id], 1)
    }

    func testFailedFlushFailsTheClientFlushAndIsRetriedByTheNext() async throws {
        let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: false)
        let coordinator = MultiConn(MultiConnConfiguration(mode: .emulate))
        let handles = try await open(3, provider, coordinator)
        for handle in handles { try await handle.writeBytes([1], at: 0) }
        let failing = handles[1].member.id
        provider.failingFlushes.withLock { $0[failing] = 1 }

        let error = await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await handles[0].flush(flags: []) }, code: .ioError)
        XCTAssertTrue(error?.message.contains("connection \(failing)") ?? false, "\(String(describing: error))")
        try await handles[0].flush(flags: [])
        let flushes = provider.flushes.withLock { $0 }
        XCTAssertEqual(flushes[failing], 1, "the failed connection stays dirty and is flushed again")
        XCTAssertEqual(flushes[handles[0].member.id], 1, "clean connections are not flushed again")
        XCTAssertEqual(flushes[handles[2].member.id], 1)
    }

    func testFailedFlushInPluginModeLeavesTheGroupDirty() async throws {
        let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: true)
        let coordinator = MultiConn(MultiConnConfiguration(mode: .plugin, dirtyTracking: .fast))
        let handles = try await open(2, provider, coordinator)
        try await handles[0].writeBytes([1], at: 0)
        provider.failingFlushes.withLock { $0[handles[1].member.id] = 1 }
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await handles[1].flush(flags: []) }, code: .ioError)
        try await handles[1].flush(flags: [])
        XCTAssertEqual(provider.flushes.withLock { $0[handles[1].member.id] }, 1)
    }

    func testEmulationIsRefusedWhenTheLayerBelowCannotFlush() async throws {
        let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: false, canFlush: false)
        for mode in [MultiConnConfiguration.Mode.auto, .emulate] {
            let coordinator = MultiConn(MultiConnConfiguration(mode: mode))
            let backend = try await provider.open(ConnectionInfo())
            let error = await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in try await coordinator.filter(wrapping: backend, for: ConnectionInfo()) }, code: .invalidArgument)
            XCTAssertTrue(error?.message.contains("requires working flush") ?? false)
        }
        let plugin = try await MultiConn(MultiConnConfiguration(mode: .plugin))
            .filter(wrapping: try await provider.open(ConnectionInfo()), for: ConnectionInfo())
        XCTAssertFalse(plugin.capabilities.canMultiConn)
        XCTAssertFalse(plugin.capabilities.canFlush)
    }

    /// Reference 1.2: can_flush / can_fua / can_multi_conn for each mode over three kinds of backend.
    func testAdvertisedCapabilitiesPerMode() async throws {
        typealias Row = (multiConn: Bool, flush: Bool, expected: [MultiConnConfiguration.Mode: [Bool]?])
        let rows: [Row] = [
            (true, true, [.auto: [true, true, true], .emulate: [true, true, true], .plugin: [true, true, true],
                          .disable: [true, true, false], .unsafe: [true, true, true]]),
            (false, true, [.auto: [true, true, true], .emulate: [true, true, true], .plugin: [true, true, false],
                           .disable: [true, true, false], .unsafe: [true, true, true]]),
            (false, false, [.auto: nil, .emulate: nil, .plugin: [false, false, false],
                            .disable: [false, false, false], .unsafe: [false, false, true]]),
        ]
        for row in rows {
            let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: row.multiConn, canFlush: row.flush)
            for (mode, expected) in row.expected {
                let coordinator = MultiConn(MultiConnConfiguration(mode: mode))
                let backend = try await provider.open(ConnectionInfo())
                do {
                    let filter = try await coordinator.filter(wrapping: backend, for: ConnectionInfo())
                    let caps = filter.capabilities
                    XCTAssertEqual([caps.canFlush, caps.fua != .none, caps.canMultiConn], expected, "\(row) \(mode)")
                } catch {
                    XCTAssertNil(expected, "\(row) \(mode) refused: \(error)")
                }
            }
        }
    }

    func testEmulateModeReportsNativeFUAAsEmulated() async throws {
        let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: false)
        let filter = try await MultiConn(MultiConnConfiguration(mode: .emulate))
            .filter(wrapping: try await provider.open(ConnectionInfo()), for: ConnectionInfo())
        XCTAssertEqual(filter.capabilities.fua, .emulated)
        XCTAssertTrue(filter.capabilities.slowOperations.contains(.flush))
    }

    func testClosingAConnectionWaitsForTheFanOutThatIsFlushingIt() async throws {
        let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: false)
        let coordinator = MultiConn(MultiConnConfiguration(mode: .emulate))
        let handles = try await open(2, provider, coordinator)
        try await handles[1].writeBytes([1], at: 0)
        let gate = AsyncGate()
        let events = OperationLog()
        let closingID = handles[1].member.id
        provider.beforeFlush.withLock {
            $0 = { id in
                await gate.pass()
                events.append(LoggedOperation(connection: id, command: .flush, offset: 0, count: 0, flags: []))
            }
        }
        let flush = Task { try await handles[0].flush(flags: []) }
        await gate.waitForArrivals(1)
        let close = Task {
            await handles[1].close()
            events.append(LoggedOperation(connection: closingID, command: .disconnect, offset: 0, count: 0, flags: []))
        }
        for _ in 0..<100 { await Task.yield() }
        await gate.open()
        try await flush.value
        await close.value
        XCTAssertEqual(events.all.map(\.command), [.flush, .disconnect], "close must wait for the flush of its connection")
        let counts = await coordinator.connectionCounts()
        XCTAssertEqual(counts[nil], 1)
        await handles[0].close()
        let empty = await coordinator.connectionCounts()
        XCTAssertTrue(empty.isEmpty, "an empty group is removed")
    }

    /// A flush that waits at `before` until the test opens it, or reports at `after` once done.
    struct GatedFlush<Next: BlockBackend>: Filter {
        let next: Next
        var before: AsyncGate?
        var after: AsyncGate?
        func flush(flags: CommandFlags) async throws(NBDError) {
            if let before { await before.pass() }
            try await next.flush(flags: flags)
            if let after { await after.pass() }
        }
    }

    /// A connection flushed early in a fan-out and used again before the others' writes reached
    /// storage refills its cache with old data; the second wave must flush it again, or its reads
    /// after the flush reply would miss what the flush published.
    func testAConnectionUsedWhileTheFanOutRunsIsFlushedAgain() async throws {
        let provider = try ConnectionCacheProvider(size: 32, initialText: "Initial contents")
        let coordinator = MultiConn(MultiConnConfiguration(mode: .emulate))
        let writerGate = AsyncGate("the writer's flush")
        let readerFlushed = AsyncGate("the reader's flush", opensAfter: 1)
        let writer = try await coordinator.filter(
            wrapping: GatedFlush(next: try await provider.open(ConnectionInfo(id: 1)), before: writerGate),
            for: ConnectionInfo(id: 1))
        let reader = try await coordinator.filter(
            wrapping: GatedFlush(next: try await provider.open(ConnectionInfo(id: 2)), after: readerFlushed),
            for: ConnectionInfo(id: 2))
        let cached = try await reader.readString(4, at: 0)
        XCTAssertEqual(cached, "Init")
        try await writer.writeString("Next", at: 0)

        let flush = Task { try await reader.flush(flags: []) }
        await writerGate.waitForArrivals(1)  // the writer's data is not on storage yet
        await readerFlushed.waitForArrivals(1)  // the reader's cache was dropped
        let concurrent = try await reader.readString(4, at: 0)  // refills it from old storage
        XCTAssertEqual(concurrent, "Init")
        await writerGate.open()
        try await flush.value

        let after = try await reader.readString(4, at: 0)
        XCTAssertEqual(after, "Next", "a read after the flush reply must see data the flush published")
        let arrivals = await readerFlushed.arrivals
        XCTAssertEqual(arrivals, 2, "the reader is flushed in both waves")
        await writer.close()
        await reader.close()
    }

    /// The fan-out runs on the executor of the task that asked for the flush (in nbd-serve the
    /// slow-operation pool), never on the cooperative pool, where blocking flushes would starve it.
    func testTheFanOutRunsOnTheRequestingTasksExecutor() async throws {
        let provider = SharedMemoryTestProvider(size: 4096, canMultiConn: false)
        let coordinator = MultiConn(MultiConnConfiguration(mode: .emulate))
        let handles = try await open(4, provider, coordinator)
        for handle in handles { try await handle.writeBytes([1], at: 0) }
        let executor = TestThreadExecutor()
        defer { executor.stop() }
        let placements = LockedValue<[Bool]>([])
        provider.beforeFlush.withLock { $0 = { _ in placements.withLock { $0.append(executor.isCurrent) } } }
        try await Task(executorPreference: executor) { try await handles[0].flush(flags: []) }.value
        XCTAssertEqual(placements.withLock { $0 }, [true, true, true, true])
    }
}

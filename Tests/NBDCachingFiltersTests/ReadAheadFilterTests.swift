import Foundation
import NBDBackends
import NBDCachingFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

/// The readahead filter: the window's adaptation, prefetches in the background, nothing to do over
/// a layer that does not cache.
final class ReadAheadFilterTests: XCTestCase {
    func testSmallSequentialReadsPrefetch32KiBAfterEachReadAsNbdkitsTest() {
        // nbdkit's tests/test-readahead.sh: ten 512-byte reads, each followed by "cache 32768 i+512".
        let window = ReadAheadWindow()
        for i in stride(from: UInt64(0), to: 5120, by: 512) {
            let prefetch = window.afterRead(count: 512, at: i, exportSize: 1 << 20)
            XCTAssertEqual(prefetch?.offset, i + 512)
            XCTAssertEqual(prefetch?.count, 32768)
        }
    }

    func testLargeSequentialReadsGrowTheWindowUntilItCoversTheNextRead() {
        let window = ReadAheadWindow()
        var sizes: [UInt64] = []
        var prefetches: [UInt64] = []
        for i in 0..<12 {
            prefetches.append(window.afterRead(count: 1 << 20, at: UInt64(i) << 20, exportSize: 1 << 30)?.count ?? 0)
            sizes.append(window.size)
        }
        XCTAssertEqual(sizes.first, ReadAheadWindow.minimum)
        XCTAssertEqual(sizes, sizes.sorted(), "the window only grows while reads stay sequential")
        XCTAssertGreaterThanOrEqual(prefetches.last ?? 0, 1 << 20, "the prefetch covers the whole next read")
        XCTAssertEqual(sizes.suffix(3), [2 << 20, 2 << 20, 2 << 20], "and stops growing once it does")
    }

    func testTheWindowNeverExceedsFourMiB() {
        let window = ReadAheadWindow()
        for i in 0..<12 { _ = window.afterRead(count: 8 << 20, at: UInt64(i) * (8 << 20), exportSize: 1 << 40) }
        XCTAssertEqual(window.size, ReadAheadWindow.maximum)
    }

    func testAReadThatGoesBackResetsTheWindow() {
        let window = ReadAheadWindow()
        for i in 0..<6 { _ = window.afterRead(count: 1 << 20, at: UInt64(i) << 20, exportSize: 1 << 30) }
        XCTAssertGreaterThan(window.size, ReadAheadWindow.minimum)
        _ = window.afterRead(count: 4096, at: 0, exportSize: 1 << 30)
        XCTAssertEqual(window.size, ReadAheadWindow.minimum)
    }

    func testNoPrefetchPastTheEndOfTheExport() {
        let window = ReadAheadWindow()
        XCTAssertNil(window.afterRead(count: 4096, at: (1 << 20) - 4096, exportSize: 1 << 20))
        XCTAssertEqual(window.afterRead(count: 4096, at: 0, exportSize: 10000)?.count, 10000 - 4096)
    }

    func testTheClientsReadNeverWaitsForAPrefetch() async throws {
        let gate = AsyncGate("prefetch release")
        let below = BlockingCacheBackend(gate: gate)
        let layer = ReadAheadLayer()
        let filter = try await layer.wrap(AnyBlockBackend(below), for: ConnectionInfo())
        // The prefetch blocks in the layer below until the gate opens; the reads must finish anyway.
        _ = try await withBoundedWait("reads while a prefetch is blocked") {
            for i in 0..<4 { _ = try await filter.readBytes(4096, at: UInt64(i * 4096)) }
        }
        await gate.waitForArrivals(1)
        await gate.open()
        // Close waits for the running prefetch, so the layer below is closed after it.
        try await withBoundedWait("close after the prefetch") { await filter.close() }
        XCTAssertTrue(below.closedAfterEveryCache)
        // Which reads' prefetches ran depends on when the background thread picked them up; each
        // one that ran is "32 KiB after a read", and the queue bounded how many ran.
        for request in below.cacheRequests {
            XCTAssertTrue([4096, 8192, 12288, 16384].contains(request.offset), "prefetch at \(request.offset)")
            XCTAssertEqual(request.count, 32768)
        }
        XCTAssertLessThanOrEqual(below.cacheRequests.count, 1 + PrefetchQueue.maximumPending)
    }

    func testNothingIsPrefetchedOverALayerThatDoesNotCache() async throws {
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20, cache: .none))
        let log = OperationLog()
        let thread = PrefetchThread()
        defer { thread.stop() }
        let filter = ReadAheadFilter(
            wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1), window: ReadAheadWindow(),
            thread: thread)
        XCTAssertFalse(filter.isPrefetching)
        _ = try await filter.readBytes(4096, at: 0)
        await filter.close()
        XCTAssertEqual(log.count(of: .cache), 0)
    }

    func testHelpSaysItNeedsALayerThatCaches() {
        XCTAssertTrue(ReadAheadLayer.summary.contains("cache"))
        XCTAssertTrue(ReadAheadLayer.parameters.isEmpty, "nbdkit's readahead filter has no parameters")
    }
}

/// A backend whose cache requests wait at a gate, recording what they asked for and whether the
/// backend was closed while one was still running.
final class BlockingCacheBackend: BlockBackend {
    let capabilities = Capabilities(size: 1 << 20, cache: .native)
    let gate: AsyncGate
    private let requests = LockedValue<[(offset: UInt64, count: UInt64)]>([])
    private let running = Atomic<Int>(0)
    private let closedWhileRunning = Atomic<Bool>(false)

    init(gate: AsyncGate) { self.gate = gate }

    var cacheRequests: [(offset: UInt64, count: UInt64)] { requests.withLock { $0 } }
    var closedAfterEveryCache: Bool { !closedWhileRunning.load(ordering: .sequentiallyConsistent) }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        running.add(1, ordering: .sequentiallyConsistent)
        requests.withLock { $0.append((offset, count)) }
        await gate.pass()
        running.subtract(1, ordering: .sequentiallyConsistent)
    }

    func close() async {
        if running.load(ordering: .sequentiallyConsistent) > 0 {
            closedWhileRunning.store(true, ordering: .sequentiallyConsistent)
        }
    }
}

/// The static stacks the DocC comments show: one concrete nested type per stack.
final class StaticCachingStackTests: XCTestCase {
    func testStaticStacksComposeAsTheDocumentationShows() async throws {
        let directory = try TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try CacheStore(
            exportSize: 1 << 20, configuration: CacheConfiguration(minimumBlockSize: 4096, directory: directory))
        let overlay = try COWOverlay(
            exportSize: 1 << 20, configuration: COWConfiguration(blockSize: 4096, directory: directory))
        let readAhead = ReadAheadLayer()
        let export = try MemoryBackendProvider(size: 1 << 20)
            .wrapped { next, connection in COWFilter(wrapping: next, overlay: overlay, connection: connection) }
            .wrapped { next, _ in CacheFilter(wrapping: next, store: store) }
            .wrapped { next, _ in ReadAheadFilter(wrapping: next, sharing: readAhead) }
        let connection = try await export.open(ConnectionInfo())
        try await connection.writeBytes([1, 2, 3], at: 100)
        try await connection.flush(flags: [])
        let seen = try await connection.readBytes(3, at: 100)
        XCTAssertEqual(seen, [1, 2, 3])
        XCTAssertEqual(overlay.state(of: 0), .allocated, "the cache wrote back into the overlay on flush")
        await connection.close()
    }
}

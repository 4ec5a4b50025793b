import NBDCore
import NBDServer
import NBDTestSupport
import Synchronization
import XCTest

/// Large write payloads of requests that run off the connection's loop come from a per-connection
/// pool, not from a fresh allocation per request (issue #25).
final class PayloadPoolTests: ServerTestCase {
    typealias Client = TestNBDClient
    typealias Cmd = TestNBDClient.Cmd

    func testAGivenBackBufferIsReusedForTheNextPayloadThatFits() {
        let pool = PayloadPool(retainedLimit: 4 << 20)
        let before = PayloadPool.allocations.load(ordering: .relaxed)
        let first = pool.take(1 << 20)
        XCTAssertEqual(first.payload.count, 1 << 20)
        let address = first.storage.baseAddress
        pool.give(first)
        XCTAssertEqual(pool.retainedBytes, 1 << 20)
        let second = pool.take(900 << 10)
        XCTAssertEqual(second.storage.baseAddress, address, "the same memory, not a new allocation")
        XCTAssertEqual(second.payload.count, 900 << 10)
        XCTAssertEqual(pool.retainedBytes, 0)
        pool.give(second)
        XCTAssertEqual(PayloadPool.allocations.load(ordering: .relaxed) - before, 1)
    }

    func testThePoolKeepsAtMostItsLimitAndNeitherSmallNorHugeBuffers() {
        let pool = PayloadPool(retainedLimit: 2 << 20)
        let buffers = (0..<3).map { _ in pool.take(1 << 20) }
        for buffer in buffers { pool.give(buffer) }
        XCTAssertEqual(pool.retainedBytes, 2 << 20, "the third buffer did not fit the limit and was freed")
        pool.give(pool.take(4096))
        pool.give(pool.take(PayloadPool.largestPooled + 1))
        XCTAssertEqual(pool.retainedBytes, 2 << 20, "small and huge payloads are not kept")
        let empty = pool.take(0)
        XCTAssertEqual(empty.payload.count, 0)
        pool.give(empty)
    }

    func testSuspendingWritesReuseOnePayloadBufferAndPassTheDataIntact() throws {
        let writes = RecordedWrites()
        let server = NBDServer(provider: SuspendingWriteProvider(writes: writes))
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        track(server)
        let client = try Client(unixPath: path)
        try client.connect()
        let before = PayloadPool.allocations.load(ordering: .relaxed)
        for index in 0..<8 {
            let data = [UInt8](repeating: UInt8(index + 1), count: 1 << 20)
            XCTAssertEqual(try client.write(data, at: UInt64(index) << 20, cookie: UInt64(index + 1)), 0)
        }
        // One write at a time: every payload after the first reuses the first one's buffer (without
        // the pool, each of the eight allocated its own megabyte).
        XCTAssertEqual(PayloadPool.allocations.load(ordering: .relaxed) - before, 1)
        XCTAssertEqual(writes.sums, (0..<8).map { UInt64($0 + 1) << 20 })
    }
}

/// The sum of the bytes of every write, in order.
final class RecordedWrites: Sendable {
    private let state = LockedValue<[UInt64]>([])
    func record(_ bytes: UnsafeRawBufferPointer) {
        let sum = bytes.reduce(UInt64(0)) { $0 + UInt64($1) }
        state.withLock { $0.append(sum) }
    }
    var sums: [UInt64] { state.withLock { $0 } }
}

/// Writes are declared suspending (as the `nbd` backend's are) and suspend once before recording.
struct SuspendingWriteBackend: BlockBackend {
    let writes: RecordedWrites
    let capabilities = Capabilities(size: 16 << 20, suspendingOperations: [.write])

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        await Task.yield()
        writes.record(bytes)
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func flush(flags: CommandFlags) async throws(NBDError) {}
}

struct SuspendingWriteProvider: BackendProvider {
    let writes: RecordedWrites

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> SuspendingWriteBackend {
        SuspendingWriteBackend(writes: writes)
    }
}

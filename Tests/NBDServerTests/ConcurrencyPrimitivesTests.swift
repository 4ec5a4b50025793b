import Dispatch
import NBDCore
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

@testable import NBDServer

#if canImport(Glibc)
    import Glibc
#endif

final class ConcurrencyPrimitivesTests: XCTestCase {
    func testThreadExecutorRunsItsTaskOnItsOwnThread() async throws {
        let executor = try XCTUnwrap(ThreadExecutor(name: "test"))
        let threads = LockedValue<Set<UInt>>([])
        let task = Task(executorPreference: executor) {
            for _ in 0..<3 {
                threads.withLock { _ = $0.insert(UInt(bitPattern: Int(pthread_self()))) }
                await Task.yield()
            }
            executor.stop()
        }
        await task.value
        let seen = threads.withLock { $0 }
        XCTAssertEqual(seen.count, 1, "every job of the pinned task ran on the executor's one thread")
        XCTAssertFalse(seen.contains(UInt(bitPattern: Int(pthread_self()))))
    }

    func testSlowOperationPoolRunsTasksConcurrently() async throws {
        let pool = SlowOperationPool(threads: 2, name: "test")
        defer { pool.stop() }
        // Two tasks that each wait for the other: they can only both finish if they run at once.
        let first = DispatchSemaphore(value: 0)
        let second = DispatchSemaphore(value: 0)
        async let a: Void = Task(executorPreference: pool) {
            first.signal()
            second.waitOrFail("the other pool task")
        }.value
        async let b: Void = Task(executorPreference: pool) {
            second.signal()
            first.waitOrFail("the other pool task")
        }.value
        _ = await (a, b)
    }

    func testCombiningWriterNeverInterleavesMessages() throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        let writer = CombiningWriter(socket: Socket(adopting: pair[0]))
        let reader = pair[1]
        defer { close(reader) }
        let threads = 4
        let messages = 200
        let size = 1000
        // Drain concurrently so writers block in send and contend.
        let received = ThreadResult { receiveAll(threads * messages * size) { recv(reader, $0.baseAddress, $0.count, 0) } }
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<messages {
                // Each message is `size` copies of one byte that names its sender and sequence.
                let message = [UInt8](repeating: UInt8(thread * 50 + index % 50), count: size)
                message.withUnsafeBytes { _ = writer.write($0) }
            }
        }
        let bytes = try XCTUnwrap(received.value("the reader to drain every message"))
        XCTAssertEqual(bytes.count, threads * messages * size)
        for start in stride(from: 0, to: bytes.count, by: size) {
            let chunk = bytes[start..<(start + size)]
            XCTAssertTrue(chunk.allSatisfy { $0 == chunk.first }, "message at \(start) was interleaved")
        }
    }
}

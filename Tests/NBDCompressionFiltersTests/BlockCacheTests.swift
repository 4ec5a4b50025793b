import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

@testable import NBDCompressionFilters

/// The block cache: concurrent reads of one block share one decode; a failed decode fails the reads
/// that waited for it and is tried again by the next; the least recently used block goes first.
final class BlockCacheTests: XCTestCase {
    private static func block(_ start: UInt64) -> CompressedBlock {
        CompressedBlock(uncompressedOffset: start, uncompressedSize: 16, compressedOffset: 0, totalSize: 1)
    }

    private static func decoded(_ start: UInt64, fill: UInt8 = 7) -> DecodedBlock {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 16)
        buffer.initializeMemory(as: UInt8.self, repeating: fill)
        return DecodedBlock(start: start, owning: buffer, count: 16)
    }

    func testConcurrentReadsOfOneBlockWaitForOneDecode() async throws {
        let cache = BlockCache(depth: 2)
        let gate = AsyncGate("the first decode")
        let decodes = Counter()
        let reads = 8
        try await withThrowingTaskGroup(of: UInt8.self) { group in
            for _ in 0..<reads {
                group.addTask {
                    let result = try await cache.block(Self.block(0)) { () async throws(NBDError) -> DecodedBlock in
                        decodes.value.add(1, ordering: .relaxed)
                        await gate.pass()
                        return Self.decoded(0)
                    }
                    return result.bytes[3]
                }
            }
            // One read decodes (held at the gate); all the others must be waiting for it.
            await waitUntil("the other reads to wait for the decode") { cache.waitingReads == reads - 1 }
            XCTAssertEqual(decodes.value.load(ordering: .relaxed), 1)
            await gate.open()
            for try await byte in group { XCTAssertEqual(byte, 7) }
        }
        XCTAssertEqual(decodes.value.load(ordering: .relaxed), 1)
        XCTAssertEqual(cache.waitingReads, 0)
    }

    func testAFailedDecodeFailsItsWaitersAndIsTriedAgain() async throws {
        let cache = BlockCache(depth: 2)
        let gate = AsyncGate("the failing decode")
        let outcomes = await withTaskGroup(of: String.self) { group in
            group.addTask {
                do {
                    try await Self.failingRead(cache, gate)
                    return "decoding read: succeeded"
                } catch { return "decoding read: \(error)" }
            }
            await waitUntil("the decode to start") { await gate.arrivals >= 1 }
            group.addTask {
                do {
                    try await Self.readThatMustNotDecode(cache)
                    return "waiting read: succeeded"
                } catch { return "waiting read: \(error)" }
            }
            await waitUntil("the second read to wait") { cache.waitingReads == 1 }
            await gate.open()
            var outcomes: Set<String> = []
            for await outcome in group { outcomes.insert(outcome) }
            return outcomes
        }
        XCTAssertEqual(outcomes, ["decoding read: EIO: corrupt block", "waiting read: EIO: corrupt block"])
        let again = try await cache.block(Self.block(0)) { () async throws(NBDError) -> DecodedBlock in
            Self.decoded(0, fill: 9)
        }
        XCTAssertEqual(again.bytes[0], 9)
    }

    private static func failingRead(_ cache: BlockCache, _ gate: AsyncGate) async throws {
        _ = try await cache.block(block(0)) { () async throws(NBDError) -> DecodedBlock in
            await gate.pass()
            throw NBDError(.ioError, "corrupt block")
        }
    }

    private static func readThatMustNotDecode(_ cache: BlockCache) async throws {
        _ = try await cache.block(block(0)) { () async throws(NBDError) -> DecodedBlock in
            XCTFail("a read waiting for a decode decoded itself")
            return decoded(0)
        }
    }

    func testTheLeastRecentlyUsedBlockIsDroppedFirst() async throws {
        let cache = BlockCache(depth: 2)
        let decodes = Counter()
        @Sendable func read(_ start: UInt64) async throws {
            _ = try await cache.block(Self.block(start)) { () async throws(NBDError) -> DecodedBlock in
                decodes.value.add(1, ordering: .relaxed)
                return Self.decoded(start)
            }
        }
        try await read(0)
        try await read(16)
        try await read(0)  // 0 is now the most recently used
        try await read(32)  // drops 16
        XCTAssertEqual(decodes.value.load(ordering: .relaxed), 3)
        try await read(0)
        XCTAssertEqual(decodes.value.load(ordering: .relaxed), 3)
        try await read(16)
        XCTAssertEqual(decodes.value.load(ordering: .relaxed), 4)
    }
}

/// A count shared by concurrent tasks.
private final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

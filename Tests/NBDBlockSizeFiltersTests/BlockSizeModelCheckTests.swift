import NBDBackends
import NBDBlockSizeFilters
import NBDCore
import NBDTestSupport
import XCTest

/// A randomized model check of the blocksize filter's read-modify-write under concurrency: several
/// connections write disjoint but block-sharing byte ranges at once while others read. The NBD rules
/// it checks:
/// - no lost update: after the round every byte holds the value of the one write that covered it, or
///   its old value if none did (a read-modify-write must not put back stale neighbouring bytes);
/// - no torn read beyond what the protocol allows: a read concurrent with writes sees, per byte, the
///   old or the new value, and bytes nobody writes read as their stable value.
/// The same check must find lost updates when the block lock grants everything, or it proves nothing.
final class BlockSizeModelCheckTests: XCTestCase {
    static let block = 512
    static let size = 8 * block
    static let connections = 4

    /// Places a ``BlockSizeFilter`` with a chosen lock over a layer that yields around every read and
    /// write, so that concurrent read-modify-writes interleave between their read and their write.
    struct Layer: FilterLayer {
        let lock: BlockRangeLock
        var name: String { "blocksize-under-test" }
        func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
            AnyBlockBackend(
                try BlockSizeFilter(wrapping: next, minimumBlock: UInt32(BlockSizeModelCheckTests.block), lock: lock))
        }
    }

    struct YieldingFilter<Next: BlockBackend>: Filter {
        let next: Next
        func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
            async throws(NBDError)
        {
            await Task.yield()
            try await next.read(into: buffer, at: offset, flags: flags)
            await Task.yield()
        }
        func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
            await Task.yield()
            try await next.write(data, at: offset, flags: flags)
        }
    }

    struct YieldingLayer: FilterLayer {
        var name: String { "yielding" }
        func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
            AnyBlockBackend(YieldingFilter(next: next))
        }
    }

    enum Access: Sendable {
        case write(UInt8)
        case read
    }

    struct Request: Sendable {
        var range: Range<Int>
        var access: Access
        var connection: Int
    }

    /// Runs `rounds` rounds and returns the number of bytes that broke a rule.
    func violations(lock: BlockRangeLock, seed: UInt64, rounds: Int = 60) async throws -> Int {
        let stack = FilterStack(
            [Layer(lock: lock), YieldingLayer()], over: try MemoryBackendProvider(size: UInt64(Self.size)))
        var handles: [AnyBlockBackend] = []
        for _ in 0..<Self.connections { handles.append(try await stack.open(ConnectionInfo())) }
        var random = SeededGenerator(seed: seed)
        var model = [UInt8](repeating: 0, count: Self.size)
        var broken = 0

        for round in 0..<rounds {
            // Cut the export into disjoint ranges of 1 to 700 bytes: most share a block with a neighbour.
            var requests: [Request] = []
            var start = 0
            var value = UInt8(truncatingIfNeeded: round * 16 + 1)
            while start < Self.size {
                let end = min(Self.size, start + Int.random(in: 1...700, using: &random))
                let writes = Bool.random(using: &random)
                requests.append(
                    Request(
                        range: start..<end, access: writes ? .write(value) : .read,
                        connection: Int.random(in: 0..<Self.connections, using: &random)))
                if writes { value = value == 255 ? 1 : value + 1 }
                start = end
            }
            // Readers also read across a writer's range, to see what a concurrent read may return.
            for _ in 0..<3 {
                let from = Int.random(in: 0..<(Self.size - 1), using: &random)
                let to = min(Self.size, from + Int.random(in: 1...1500, using: &random))
                requests.append(
                    Request(
                        range: from..<to, access: .read,
                        connection: Int.random(in: 0..<Self.connections, using: &random)))
            }
            let before = model
            var after = model
            for request in requests {
                if case .write(let byte) = request.access {
                    after.replaceSubrange(request.range, with: repeatElement(byte, count: request.range.count))
                }
            }
            let reads = try await withThrowingTaskGroup(of: (Range<Int>, [UInt8])?.self) { group in
                for request in requests {
                    let handle = handles[request.connection]
                    group.addTask {
                        switch request.access {
                        case .write(let byte):
                            try await handle.writeBytes(
                                [UInt8](repeating: byte, count: request.range.count),
                                at: UInt64(request.range.lowerBound))
                            return nil
                        case .read:
                            let bytes = try await handle.readBytes(
                                request.range.count, at: UInt64(request.range.lowerBound))
                            return (request.range, bytes)
                        }
                    }
                }
                var reads: [(Range<Int>, [UInt8])] = []
                for try await read in group { if let read { reads.append(read) } }
                return reads
            }
            for (range, bytes) in reads {
                for (index, byte) in zip(range, bytes) where byte != before[index] && byte != after[index] {
                    broken += 1
                }
            }
            model = after
            let stored = try await handles[0].readBytes(Self.size, at: 0)
            broken += zip(stored, model).filter { $0 != $1 }.count
        }
        for handle in handles { await handle.close() }
        return broken
    }

    func testConcurrentReadModifyWritesLoseNoUpdateAndTearNoRead() async throws {
        for seed: UInt64 in [1, 2, 3] {
            let broken = try await violations(lock: BlockRangeLock(), seed: seed)
            XCTAssertEqual(broken, 0, "seed \(seed): \(broken) bytes broke the NBD rules")
        }
    }

    func testTheCheckFindsLostUpdatesWithoutTheBlockLock() async throws {
        var broken = 0
        for seed: UInt64 in [1, 2, 3] where broken == 0 {
            broken += try await violations(lock: .grantingEverything(), seed: seed)
        }
        XCTAssertGreaterThan(broken, 0, "without the lock, concurrent read-modify-writes must lose updates")
    }

    func testTheLockGrantsDisjointClaimsAtOnceAndQueuesConflictingOnes() async throws {
        let lock = BlockRangeLock()
        let filter = try BlockSizeFilter(
            wrapping: TestMemoryBackend(capabilities: Capabilities(size: 1 << 20)), minimumBlock: 512, lock: lock)
        // An unaligned write to block 0 and an aligned write to blocks 2-3 hold the lock together.
        let gate = AsyncGate("blocked write")
        let blocked = BlockingBackend(gate: gate, base: TestMemoryBackend(capabilities: Capabilities(size: 1 << 20)))
        let slow = try BlockSizeFilter(wrapping: blocked, minimumBlock: 512, lock: lock)
        let first = Task { try await slow.writeBytes([1, 2, 3], at: 10) }
        await gate.waitForArrivals(1)
        XCTAssertEqual(lock.counts.held, 1)
        try await filter.writeBytes([UInt8](repeating: 9, count: 1024), at: 1024)
        // A write to block 0 must wait for the first one.
        let second = Task { try await filter.writeBytes([4], at: 0) }
        let queued = await waitUntil("the second write to queue") { lock.counts.waiting == 1 }
        XCTAssertTrue(queued)
        await gate.open()
        try await first.value
        try await second.value
        XCTAssertEqual(lock.counts.held, 0)
        XCTAssertEqual(lock.counts.waiting, 0)
    }
}

/// A backend whose reads wait at a gate, to hold a read-modify-write in the middle.
struct BlockingBackend: BlockBackend {
    let gate: AsyncGate
    let base: TestMemoryBackend
    var capabilities: Capabilities { base.capabilities }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        await gate.pass()
        try await base.read(into: buffer, at: offset, flags: flags)
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await base.write(data, at: offset, flags: flags)
    }
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await base.zero(count: count, at: offset, flags: flags)
    }
}

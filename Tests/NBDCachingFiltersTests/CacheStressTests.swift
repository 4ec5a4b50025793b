import Foundation
import NBDCachingFilters
import NBDCore
import NBDTestSupport
import XCTest

/// Several connections writing, reading and flushing at once through one small cache that must
/// keep reclaiming: every connection must read back what it wrote, the cache must stay within its
/// maximum, and after the last flush the layer below must hold every write.
final class CacheStressTests: XCTestCase {
    func testConcurrentConnectionsThroughAReclaimingCacheLoseNothing() async throws {
        let directory = try TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for mode in [CacheMode.writeback, .writethrough, .unsafe] {
            for onRead in [false, true] {
                try await run(mode: mode, onRead: onRead, directory: directory)
            }
        }
    }

    private func run(mode: CacheMode, onRead: Bool, directory: String) async throws {
        let tasks = 4, blocks = 1024, blockSize = 4096
        let backend = TestMemoryBackend(capabilities: Capabilities(size: UInt64(blocks * blockSize)))
        let store = try CacheStore(
            exportSize: UInt64(blocks * blockSize),
            configuration: CacheConfiguration(
                mode: mode, minimumBlockSize: blockSize, cacheOnRead: onRead, maximumSize: 1 << 20,
                directory: directory))
        let limit = (1 << 20) / store.blockSize
        let label = "cache=\(mode) cache-on-read=\(onRead)"
        // Task t owns blocks t, t + 4, t + 8, ...: no two tasks write the same block, so every read
        // has one right answer.
        let models = try await withThrowingTaskGroup(of: [Int: UInt8].self) { group in
            for task in 0..<tasks {
                group.addTask {
                    let connection = CacheFilter(wrapping: backend, store: store)
                    var random = SeededGenerator(seed: UInt64(task + 1) * 7919)
                    var model: [Int: UInt8] = [:]
                    for _ in 0..<300 {
                        let block = Int.random(in: 0..<(blocks / tasks), using: &random) * tasks + task
                        switch Int.random(in: 0..<10, using: &random) {
                        case 0..<5:
                            let value = UInt8.random(in: 1...255, using: &random)
                            let flags: CommandFlags = Int.random(in: 0..<8, using: &random) == 0 ? .fua : []
                            try await connection.writeBytes(
                                [UInt8](repeating: value, count: blockSize), at: UInt64(block * blockSize), flags: flags
                            )
                            model[block] = value
                        case 5..<9:
                            let seen = try await connection.readBytes(blockSize, at: UInt64(block * blockSize))
                            let expected = [UInt8](repeating: model[block] ?? 0, count: blockSize)
                            if seen != expected {
                                XCTFail("\(label): block \(block) read \(seen[0]), expected \(model[block] ?? 0)")
                                return model
                            }
                        default:
                            try await connection.flush(flags: [])
                        }
                        XCTAssertLessThanOrEqual(store.cachedBlocks, limit, label)
                    }
                    return model
                }
            }
            var all: [Int: UInt8] = [:]
            for try await model in group { all.merge(model) { $1 } }
            return all
        }
        XCTAssertLessThanOrEqual(store.file.allocatedBytes, 1 << 20, label)
        // Unsafe mode ignores flushes; write back the rest as the end of a writeback run would.
        try await store.flush(next: backend)
        for (block, value) in models {
            let below = try await backend.readBytes(blockSize, at: UInt64(block * blockSize))
            XCTAssertTrue(
                below.allSatisfy { $0 == value }, "\(label): block \(block) below holds \(below[0]), not \(value)")
        }
    }
}

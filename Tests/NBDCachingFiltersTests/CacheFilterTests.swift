import Foundation
import NBDCachingFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

/// The cache filter's block logic, observed through a ``RecordingFilter`` below it.
final class CacheFilterTests: XCTestCase {
    typealias Stack = CacheFilter<RecordingFilter<TestMemoryBackend>>

    private var directory: String!

    override func setUpWithError() throws {
        directory = try TemporaryDirectory.make()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func makeStack(
        _ configuration: CacheConfiguration = CacheConfiguration(), below: Capabilities = Capabilities(size: 1 << 20),
        store existing: CacheStore? = nil
    ) throws -> (Stack, OperationLog, TestMemoryBackend, CacheStore) {
        var configuration = configuration
        configuration.minimumBlockSize = 4096
        configuration.directory = directory
        let backend = TestMemoryBackend(capabilities: below)
        let log = OperationLog()
        let store = try existing ?? CacheStore(exportSize: below.size, configuration: configuration)
        let filter = CacheFilter(wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1), store: store)
        return (filter, log, backend, store)
    }

    func bytes(_ value: UInt8, _ count: Int = 4096) -> [UInt8] { [UInt8](repeating: value, count: count) }

    func testWritebackKeepsWritesUntilAFlushWritesThemBack() async throws {
        let (cache, log, backend, store) = try makeStack()
        try await cache.writeBytes(bytes(7), at: 8192)
        XCTAssertEqual(log.count(of: .write), 0, "writeback must not write below before a flush")
        try await assertEqual({ try await backend.readBytes(4096, at: 8192) }, bytes(0))
        try await assertEqual({ try await cache.readBytes(4096, at: 8192) }, bytes(7))
        XCTAssertEqual(store.dirtyBlocks, 1)
        try await cache.flush(flags: [])
        try await assertEqual({ try await backend.readBytes(4096, at: 8192) }, bytes(7))
        XCTAssertEqual(log.all.map(\.command), [.write, .flush])
        XCTAssertEqual(store.dirtyBlocks, 0)
    }

    func testWritethroughWritesBelowBeforeReplying() async throws {
        let (cache, log, backend, store) = try makeStack(CacheConfiguration(mode: .writethrough))
        try await cache.writeBytes(bytes(3, 100), at: 50)
        try await assertEqual({ try await backend.readBytes(100, at: 50) }, bytes(3, 100))
        // The block is read to fill the cache (a partial block), then only the client's bytes go down.
        XCTAssertEqual(log.all.map { "\($0.command) \($0.offset) \($0.count)" }, ["read 0 4096", "write 50 100"])
        XCTAssertEqual(store.state(of: 0), .clean, "written blocks are cached, clean")
        XCTAssertEqual(store.dirtyBlocks, 0)
    }

    func testUnsafeModeIgnoresFlushesAndAdvertisesThem() async throws {
        let below = Capabilities(size: 1 << 20, canFlush: false, fua: .none)
        let (cache, log, backend, _) = try makeStack(CacheConfiguration(mode: .unsafe), below: below)
        XCTAssertTrue(cache.capabilities.canFlush)
        XCTAssertEqual(cache.capabilities.fua, .native)
        try await cache.writeBytes(bytes(9), at: 0, flags: .fua)
        try await cache.flush(flags: [])
        XCTAssertTrue(log.all.isEmpty, "unsafe mode sent \(log.all) below")
        try await assertEqual({ try await backend.readBytes(4096, at: 0) }, bytes(0))
    }

    func testFUAWriteGoesThroughWithFUAAndLeavesOtherDirtyBlocks() async throws {
        let (cache, log, backend, store) = try makeStack()
        try await cache.writeBytes(bytes(1), at: 0)
        try await cache.writeBytes(bytes(2, 512), at: 4096 + 512, flags: .fua)
        XCTAssertEqual(
            log.all.map { "\($0.command) \($0.offset) \($0.count) fua=\($0.flags.contains(.fua))" },
            ["read 4096 4096 fua=false", "write 4608 512 fua=true"])
        try await assertEqual({ try await backend.readBytes(512, at: 4608) }, bytes(2, 512))
        XCTAssertEqual(store.dirtyBlocks, 1, "the unrelated block stays dirty")
    }

    func testFUAOverEmulatedFUABelowFlushesEverything() async throws {
        let (cache, log, backend, _) = try makeStack(below: Capabilities(size: 1 << 20, fua: .emulated))
        try await cache.writeBytes(bytes(1), at: 0)
        try await cache.writeBytes(bytes(2), at: 4096, flags: .fua)
        XCTAssertEqual(log.all.last?.command, .flush)
        XCTAssertFalse(log.all.contains { $0.flags.contains(.fua) })
        try await assertEqual({ try await backend.readBytes(8192, at: 0) }, bytes(1) + bytes(2))
    }

    func testPartialBlockWritesMergeWithTheLayerBelow() async throws {
        let (cache, _, backend, _) = try makeStack()
        try await backend.writeBytes(bytes(5, 8192), at: 0)
        try await cache.writeBytes(bytes(6, 10), at: 4090)
        let expected = bytes(5, 4090) + bytes(6, 10) + bytes(5, 8192 - 4100)
        try await assertEqual({ try await cache.readBytes(8192, at: 0) }, expected)
        try await cache.flush(flags: [])
        try await assertEqual({ try await backend.readBytes(8192, at: 0) }, expected)
    }

    func testReadsSpanningCachedAndUncachedBlocksAreAssembledInOrder() async throws {
        for limit in [nil, UInt64(1 << 20)] {
            let (cache, _, backend, _) = try makeStack(
                CacheConfiguration(maximumSize: limit), below: Capabilities(size: 2 << 20))
            try await backend.writeBytes(bytes(9, 6 * 4096), at: 0)
            // Blocks 0, 1 and 4 cached (dirty), 2, 3 and 5 only below.
            try await cache.writeBytes(bytes(1, 2 * 4096), at: 0)
            try await cache.writeBytes(bytes(4), at: 4 * 4096)
            let expected = bytes(1, 2 * 4096 - 100) + bytes(9, 2 * 4096) + bytes(4) + bytes(9, 200)
            try await assertEqual(
                { try await cache.readBytes(expected.count, at: 100) }, expected, "limit \(String(describing: limit))")
        }
    }

    func testCacheOnReadServesRepeatedReadsFromTheCache() async throws {
        var configuration = CacheConfiguration()
        configuration.onRead = .on
        let (cache, log, _, store) = try makeStack(configuration)
        _ = try await cache.readBytes(100, at: 10)
        _ = try await cache.readBytes(100, at: 10)
        XCTAssertEqual(log.count(of: .read), 1)
        XCTAssertEqual(store.state(of: 0), .clean)
    }

    func testWithoutCacheOnReadEveryReadGoesBelow() async throws {
        let (cache, log, _, store) = try makeStack()
        _ = try await cache.readBytes(3 * 4096, at: 0)
        _ = try await cache.readBytes(100, at: 10)
        XCTAssertEqual(log.count(of: .read), 2, "a run of uncached blocks is one read below")
        XCTAssertEqual(store.cachedBlocks, 0)
    }

    func testCacheOnReadPathFollowsTheFileExisting() async throws {
        let switchFile = directory + "/on"
        var configuration = CacheConfiguration()
        configuration.onRead = try OnReadSetting.parse(switchFile, for: "cache-on-read")
        let (cache, log, _, _) = try makeStack(configuration)
        _ = try await cache.readBytes(10, at: 0)
        _ = try await cache.readBytes(10, at: 0)
        XCTAssertEqual(log.count(of: .read), 2)
        XCTAssertTrue(FileManager.default.createFile(atPath: switchFile, contents: nil))
        _ = try await cache.readBytes(10, at: 0)
        _ = try await cache.readBytes(10, at: 0)
        XCTAssertEqual(log.count(of: .read), 3, "with the file present, the second read is cached")
    }

    func testCacheRequestsFillTheCacheWhateverCacheOnReadSays() async throws {
        let (cache, log, _, store) = try makeStack()
        try await cache.cache(count: 5000, at: 4000, flags: [])
        XCTAssertEqual(store.cachedBlocks, 3)
        _ = try await cache.readBytes(5000, at: 4000)
        XCTAssertEqual(log.count(of: .read), 3, "only the fills read below")
    }

    func testCacheNeverGrowsPastItsMaximumAndLosesNothing() async throws {
        var configuration = CacheConfiguration(maximumSize: 1 << 20)
        configuration.onRead = .on
        let below = Capabilities(size: 4 << 20)
        let (cache, _, backend, store) = try makeStack(configuration, below: below)
        let limit = Int(1 << 20) / store.blockSize
        for block in 0..<(4 * limit) {
            try await cache.writeBytes(
                bytes(UInt8(block % 251 + 1), store.blockSize), at: UInt64(block * store.blockSize))
            XCTAssertLessThanOrEqual(store.cachedBlocks, limit)
            XCTAssertLessThanOrEqual(store.file.allocatedBytes, 1 << 20, "after block \(block)")
        }
        for block in 0..<(4 * limit) {
            let data = try await cache.readBytes(store.blockSize, at: UInt64(block * store.blockSize))
            XCTAssertTrue(data.allSatisfy { $0 == UInt8(block % 251 + 1) }, "block \(block) reads \(data[0]) ...")
        }
        try await cache.flush(flags: [])
        for block in 0..<(4 * limit) {
            let data = try await backend.readBytes(store.blockSize, at: UInt64(block * store.blockSize))
            XCTAssertTrue(data.allSatisfy { $0 == UInt8(block % 251 + 1) }, "block \(block) below holds \(data[0]) ...")
        }
    }

    func testReclaimingEvictsTheLeastRecentlyUsedBlocks() async throws {
        var configuration = CacheConfiguration(maximumSize: 1 << 20, highThreshold: 95, lowThreshold: 50)
        configuration.onRead = .on
        let (cache, _, _, store) = try makeStack(configuration, below: Capabilities(size: 4 << 20))
        let limit = Int(1 << 20) / store.blockSize
        let high = limit * 95 / 100
        for block in 0..<high { _ = try await cache.readBytes(1, at: UInt64(block * store.blockSize)) }
        // Block 0 becomes the most recently used; the next fill must reclaim the oldest instead.
        _ = try await cache.readBytes(1, at: 0)
        _ = try await cache.readBytes(1, at: UInt64(high * store.blockSize))
        XCTAssertNotNil(store.state(of: 0), "the most recently used block was reclaimed")
        XCTAssertNil(store.state(of: 1), "the least recently used block was kept")
        XCTAssertLessThanOrEqual(store.cachedBlocks, limit / 2 + 1)
    }

    func testAFullCacheFileFailsWithENOSPCAndKeepsServing() async throws {
        let (cache, _, backend, store) = try makeStack()
        try await cache.writeBytes(bytes(1), at: 0)
        store.file.injectedWriteError.store(ENOSPC, ordering: .relaxed)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await cache.writeBytes(self.bytes(2), at: 8192) },
            code: .noSpace)
        XCTAssertNil(store.state(of: 2), "a block that could not be stored is not cached")
        try await assertEqual(
            { try await cache.readBytes(4096, at: 0) }, bytes(1), "reads still work while the disk is full")
        store.file.injectedWriteError.store(0, ordering: .relaxed)
        try await cache.writeBytes(bytes(3), at: 8192)
        try await cache.flush(flags: [])
        try await assertEqual({ try await backend.readBytes(4096 * 3, at: 0) }, bytes(1) + bytes(0) + bytes(3))
    }

    func testAWriteOfSeveralWholeBlocksStoresThemWithOnePwrite() async throws {
        let (cache, log, backend, store) = try makeStack()
        let size = store.blockSize
        // A partial head block, four whole blocks, a partial tail block.
        let data = (0..<(4 * size + 200)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        let before = store.file.writeCalls.load(ordering: .relaxed)
        try await cache.writeBytes(data, at: UInt64(size - 100))
        XCTAssertEqual(
            store.file.writeCalls.load(ordering: .relaxed) - before, 3,
            "head, the run of four whole blocks, tail: one write each (not one per block)")
        XCTAssertEqual(store.dirtyBlocks, 6)
        XCTAssertEqual(log.count(of: .write), 0, "writeback: nothing below before a flush")
        try await assertEqual({ try await cache.readBytes(data.count, at: UInt64(size - 100)) }, data)
        try await cache.flush(flags: [])
        XCTAssertEqual(store.dirtyBlocks, 0)
        try await assertEqual({ try await backend.readBytes(data.count, at: UInt64(size - 100)) }, data)
    }

    func testAFailedWriteOfWholeBlocksLeavesThemUncached() async throws {
        let (cache, _, backend, store) = try makeStack()
        let size = store.blockSize
        try await cache.writeBytes(bytes(5, size), at: 0)
        store.file.injectedWriteError.store(ENOSPC, ordering: .relaxed)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await cache.writeBytes(self.bytes(6, 3 * size), at: 0) }, code: .noSpace)
        store.file.injectedWriteError.store(0, ordering: .relaxed)
        XCTAssertEqual(store.state(of: 0), .dirty, "a block cached before keeps its state")
        XCTAssertNil(store.state(of: 1), "blocks that could not be stored are not cached")
        XCTAssertNil(store.state(of: 2))
        try await cache.flush(flags: [])
        try await assertEqual({ try await backend.readBytes(3 * size, at: 0) }, bytes(5, size) + bytes(0, 2 * size))
    }

    func testAFailedWriteBackKeepsTheBlockDirtyForTheNextFlush() async throws {
        let (cache, _, backend, store) = try makeStack()
        try await cache.writeBytes(bytes(4), at: 0)
        backend.failNext(.write, with: NBDError(.ioError, "disk on fire"))
        await XCTAssertThrowsNBDError({ () throws(NBDError) in try await cache.flush(flags: []) }, code: .ioError)
        XCTAssertEqual(store.dirtyBlocks, 1)
        try await cache.flush(flags: [])
        try await assertEqual({ try await backend.readBytes(4096, at: 0) }, bytes(4))
    }

    func testAFlushOnAnyConnectionWritesBackEveryConnectionsBlocks() async throws {
        let (first, _, backend, store) = try makeStack()
        let second = CacheFilter(wrapping: backend, store: store)
        try await first.writeBytes(bytes(8), at: 0)
        try await second.flush(flags: [])
        try await assertEqual({ try await backend.readBytes(4096, at: 0) }, bytes(8))
    }

    func testCapabilitiesAreNbdkits() throws {
        let below = Capabilities(size: 1 << 20, canMultiConn: false)
        XCTAssertTrue(try makeStack(CacheConfiguration(mode: .writeback), below: below).0.capabilities.canMultiConn)
        XCTAssertTrue(try makeStack(CacheConfiguration(mode: .unsafe), below: below).0.capabilities.canMultiConn)
        XCTAssertFalse(try makeStack(CacheConfiguration(mode: .writethrough), below: below).0.capabilities.canMultiConn)
        // A cache that reclaims is only as consistent across connections as the layer below.
        XCTAssertFalse(
            try makeStack(CacheConfiguration(maximumSize: 1 << 20), below: below).0.capabilities.canMultiConn)
        let consistent = Capabilities(size: 1 << 20, canMultiConn: true)
        XCTAssertTrue(
            try makeStack(CacheConfiguration(maximumSize: 1 << 20), below: consistent).0.capabilities.canMultiConn)
        let caps = try makeStack().0.capabilities
        XCTAssertEqual(caps.cache, .native)
        XCTAssertTrue(caps.canFastZero)
        XCTAssertEqual(caps.blockSize.preferred, 4096)
    }

    func testZeroIsWrittenLikeDataAndFastZeroIsRefused() async throws {
        let (cache, log, backend, _) = try makeStack()
        try await backend.writeBytes(bytes(9, 8192), at: 0)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await cache.zero(count: 4096, at: 0, flags: .fastZero) },
            code: .notSupported)
        try await cache.zero(count: 5000, at: 100, flags: [])
        try await assertEqual(
            { try await cache.readBytes(8192, at: 0) }, bytes(9, 100) + bytes(0, 5000) + bytes(9, 8192 - 5100))
        XCTAssertEqual(log.count(of: .writeZeroes), 0)
    }

    func testBlockStatusReportsDirtyBlocksAsData() async throws {
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20, canExtents: true))
        let store = try CacheStore(
            exportSize: 1 << 20, configuration: CacheConfiguration(minimumBlockSize: 4096, directory: directory))
        // The layer below says "hole" everywhere; the dirty block exists only in the cache.
        let cache = CacheFilter(wrapping: HoleFilter(next: backend), store: store)
        try await cache.writeBytes(bytes(1), at: 4096)
        let extents = try await cache.extents(count: 16384, at: 0, flags: [])
        XCTAssertEqual(extents, [.hole(4096), .data(4096), .hole(8192)])
        try await cache.flush(flags: [])
        try await assertEqual({ try await cache.extents(count: 16384, at: 0, flags: []) }, [.hole(16384)])
    }

    func testParametersUseNbdkitsNamesAndNameTheParameterInErrors() throws {
        let layer = try CacheLayer(parameters: [
            "cache": "writethrough", "cache-on-read": "true", "cache-max-size": "2M",
        ])
        XCTAssertEqual(layer.configuration.mode, .writethrough)
        XCTAssertEqual(layer.configuration.maximumSize, 2 << 20)
        XCTAssertEqual(try CacheLayer(parameters: [:]).configuration.mode, .writeback)
        for (key, value) in [
            ("cache", "sometimes"), ("cache-min-block-size", "1000"), ("cache-max-size", "4K"),
            ("cache-on-read", "maybe"), ("cache-high-threshold", "0"),
        ] {
            XCTAssertThrowsError(try CacheLayer(parameters: [key: value])) { error in
                XCTAssertTrue("\(error)".contains(key), "\(error) does not name \(key)")
            }
        }
        XCTAssertThrowsError(
            try CacheLayer(parameters: [
                "cache-max-size": "1G", "cache-low-threshold": "90", "cache-high-threshold": "80",
            ])
        ) { XCTAssertTrue("\($0)".contains("cache-low-threshold")) }
    }

    func testEachExportNameHasItsOwnCacheUpToALimit() async throws {
        let layer = try CacheLayer(configuration: CacheConfiguration(minimumBlockSize: 4096, directory: directory))
        let backend = AnyBlockBackend(TestMemoryBackend(capabilities: Capabilities(size: 1 << 20)))
        let a = try await layer.wrap(backend, for: ConnectionInfo(exportName: "a"))
        let alsoA = try await layer.wrap(backend, for: ConnectionInfo(exportName: "a"))
        let b = try await layer.wrap(backend, for: ConnectionInfo(exportName: "b"))
        try await a.writeBytes(bytes(1, 10), at: 0)
        try await assertEqual({ try await alsoA.readBytes(10, at: 0) }, bytes(1, 10), "one cache per export name")
        try await assertEqual({ try await b.readBytes(10, at: 0) }, bytes(0, 10), "another name, another cache")
        for i in 2..<CacheLayer.maximumExports {
            _ = try await layer.wrap(backend, for: ConnectionInfo(exportName: "export \(i)"))
        }
        do {
            _ = try await layer.wrap(backend, for: ConnectionInfo(exportName: "one too many"))
            XCTFail("a connection to one export name too many was accepted")
        } catch {
            XCTAssertEqual(error.code, .noSpace)
            XCTAssertTrue(error.message.contains("one too many"), error.message)
        }
        _ = try await layer.wrap(backend, for: ConnectionInfo(exportName: "a"))
        await layer.shutdown()
    }

    func testTheCacheFileHasNoNameFromTheStart() throws {
        let (_, _, _, store) = try makeStack()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), [])
        XCTAssertEqual(store.file.directory, directory)
    }

    func testConcurrentWritesToDifferentBlocksAllLand() async throws {
        let (cache, _, backend, store) = try makeStack()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for i in 0..<16 {
                        let block = task * 16 + i
                        // Half-block writes so every one is a read-modify-write of its block.
                        let data = [UInt8](repeating: UInt8(block + 1), count: 2048)
                        try await cache.writeBytes(data, at: UInt64(block * 4096 + 1024))
                    }
                }
            }
            try await group.waitForAll()
        }
        XCTAssertEqual(store.dirtyBlocks, 128)
        try await cache.flush(flags: [])
        for block in 0..<128 {
            let data = try await backend.readBytes(4096, at: UInt64(block * 4096))
            XCTAssertEqual(data, bytes(0, 1024) + bytes(UInt8(block + 1), 2048) + bytes(0, 1024), "block \(block)")
        }
    }
}

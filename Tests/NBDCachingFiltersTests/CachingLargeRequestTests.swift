import Foundation
import NBDBackends
import NBDCachingFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

/// Zero, trim and block status requests above 4 GiB (one request with extended headers) through
/// cow and cache, over a sparse 16 GiB memory export: bookkeeping per block, never a buffer or a
/// temporary file write sized by the request.
final class CachingLargeRequestTests: XCTestCase {
    static let gib: UInt64 = 1 << 30
    static let exportSize: UInt64 = 16 << 30
    /// 1 MiB cow blocks: the per-block bookkeeping of 5 GiB stays quick under the sanitizers.
    static let block = 1 << 20

    private var directory: String!

    override func setUpWithError() throws {
        directory = try TemporaryDirectory.make()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func memory(log: OperationLog) async throws -> RecordingFilter<MemoryBackend> {
        RecordingFilter(
            wrapping: try await MemoryBackendProvider(size: Self.exportSize).open(ConnectionInfo()), log: log,
            connection: 1)
    }

    private func cow(log: OperationLog) async throws -> (COWFilter<RecordingFilter<MemoryBackend>>, MemoryBackend) {
        let below = try await memory(log: log)
        let overlay = try COWOverlay(
            exportSize: Self.exportSize, configuration: COWConfiguration(blockSize: Self.block, directory: directory))
        return (COWFilter(wrapping: below, overlay: overlay), below.next)
    }

    func testAFiveGiBZeroThroughCowTrimsTheOverlayAcrossFourGiB() async throws {
        let log = OperationLog()
        let (cow, memory) = try await cow(log: log)
        let start = 2 * Self.gib + 100
        let end = start + 5 * Self.gib
        for offset in [start - 1, start, 4 * Self.gib, end - 1, end] { try await memory.writeBytes([7], at: offset) }

        try await cow.zero(count: 5 * Self.gib, at: start, flags: [])

        XCTAssertTrue(log.all.allSatisfy { $0.command == .read }, "only partial blocks are read below")
        XCTAssertLessThanOrEqual(cow.overlay.file.writeCalls.load(ordering: .relaxed), 2, "only partial blocks")
        XCTAssertLessThanOrEqual(cow.overlay.file.allocatedBytes, 2 << 20, "the overlay holds only the partial blocks")
        for (offset, value) in [(start - 1, 7), (start, 0), (4 * Self.gib, 0), (end - 1, 0), (end, 7)]
            as [(UInt64, UInt8)]
        {
            try await assertEqual({ try await cow.readBytes(1, at: offset) }, [value], "byte at \(offset)")
        }
        let whole = UInt64(Self.block)
        let extents = try await cow.extents(count: 5 * Self.gib - whole, at: 2 * Self.gib + whole, flags: [])
        XCTAssertEqual(extents, [.hole(5 * Self.gib - whole)], "the trimmed blocks are one hole above 4 GiB")
    }

    func testAFiveGiBNoHoleZeroThroughCowWritesNoZeroesToTheOverlay() async throws {
        let log = OperationLog()
        let (cow, memory) = try await cow(log: log)
        try await memory.writeBytes([7], at: 4 * Self.gib)
        try await memory.writeBytes([7], at: 6 * Self.gib)

        try await cow.zero(count: 5 * Self.gib, at: 3 * Self.gib, flags: .noHole)

        XCTAssertEqual(cow.overlay.file.writeCalls.load(ordering: .relaxed), 0, "whole blocks are punched, not written")
        XCTAssertLessThan(cow.overlay.file.allocatedBytes, 1 << 20)
        try await assertEqual({ try await cow.readBytes(1, at: 4 * Self.gib) }, [0])
        try await assertEqual({ try await cow.readBytes(1, at: 6 * Self.gib) }, [0])
        let extents = try await cow.extents(count: 5 * Self.gib, at: 3 * Self.gib, flags: [])
        XCTAssertEqual(extents, [.data(5 * Self.gib)], "NO_HOLE zeroes are allocated data")
    }

    func testCacheZeroesAcrossFourGiBAndReportsItsDirtyBlocksInsideLongHoles() async throws {
        let log = OperationLog()
        let below = try await memory(log: log)
        let store = try CacheStore(exportSize: Self.exportSize, configuration: CacheConfiguration(directory: directory))
        let cache = CacheFilter(wrapping: below, store: store)
        try await below.writeBytes([UInt8](repeating: 7, count: 1 << 20), at: 4 * Self.gib - (512 << 10))
        log.reset()

        try await cache.zero(count: 1 << 20, at: 4 * Self.gib - (512 << 10) + 1, flags: [])
        try await cache.writeBytes([1], at: 9 * Self.gib)
        let extents = try await cache.extents(count: 8 * Self.gib, at: 5 * Self.gib, flags: [])
        XCTAssertEqual(Array(extents.prefix(2)), [.hole(4 * Self.gib), .data(65536)])
        XCTAssertFalse(log.all.contains { $0.command == .write }, "writeback keeps the zeroes until a flush")

        try await cache.flush(flags: [])
        let expected: [UInt8] = [7] + [UInt8](repeating: 0, count: (1 << 20) - 1)
        try await assertEqual({ try await below.readBytes(1 << 20, at: 4 * Self.gib - (512 << 10)) }, expected)
        try await assertEqual({ try await cache.readBytes(1, at: 9 * Self.gib) }, [1])
    }
}

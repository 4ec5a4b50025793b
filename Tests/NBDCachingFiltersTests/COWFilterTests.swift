import Foundation
import NBDCachingFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

/// The cow filter's overlay logic: the layer below is never written, observed through a
/// ``RecordingFilter``.
final class COWFilterTests: XCTestCase {
    typealias Stack = COWFilter<RecordingFilter<TestMemoryBackend>>

    private var directory: String!

    override func setUpWithError() throws {
        directory = try TemporaryDirectory.make()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func makeStack(
        _ configuration: COWConfiguration = COWConfiguration(blockSize: 4096),
        below: Capabilities = Capabilities(
            size: 1 << 20, isWritable: false, canFlush: false, fua: .none, canExtents: true)
    ) async throws -> (Stack, OperationLog, TestMemoryBackend) {
        var configuration = configuration
        configuration.directory = directory
        let backend = TestMemoryBackend(capabilities: below)
        let log = OperationLog()
        let overlay = try COWOverlay(exportSize: below.size, configuration: configuration)
        return (
            COWFilter(wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1), overlay: overlay), log,
            backend
        )
    }

    func bytes(_ value: UInt8, _ count: Int = 4096) -> [UInt8] { [UInt8](repeating: value, count: count) }

    /// Fills the layer below with a pattern before the filter is used (the backend itself is writable).
    func seed(_ backend: TestMemoryBackend, _ value: UInt8 = 0xAA, count: Int = 65536) async throws {
        try await backend.writeBytes(bytes(value, count), at: 0)
    }

    func testWritesGoToTheOverlayAndNeverBelow() async throws {
        let (cow, log, backend) = try await makeStack()
        try await seed(backend)
        try await cow.writeBytes(bytes(1, 100), at: 4000, flags: .fua)
        try await cow.zero(count: 8192, at: 8192, flags: [])
        try await cow.trim(count: 5000, at: 20000, flags: [])
        try await cow.flush(flags: [])
        XCTAssertTrue(log.all.allSatisfy { $0.command == .read }, "sent below: \(log.all)")
        try await assertEqual({ try await backend.readBytes(65536, at: 0) }, bytes(0xAA, 65536))
        let expected =
            bytes(0xAA, 4000) + bytes(1, 100) + bytes(0xAA, 8192 - 4100) + bytes(0, 8192)
            + bytes(0xAA, 20000 - 16384) + bytes(0, 5000) + bytes(0xAA, 65536 - 25000)
        try await assertEqual({ try await cow.readBytes(65536, at: 0) }, expected)
    }

    func testAWriteOfSeveralWholeBlocksGoesIntoTheOverlayWithOnePwrite() async throws {
        let (cow, log, backend) = try await makeStack()
        try await seed(backend, 9)
        let size = cow.overlay.blockSize
        // A partial head block, four whole blocks, a partial tail block.
        let data = (0..<(4 * size + 200)).map { UInt8(truncatingIfNeeded: $0 &* 5 &+ 3) }
        let before = cow.overlay.file.writeCalls.load(ordering: .relaxed)
        try await cow.writeBytes(data, at: UInt64(size - 100))
        XCTAssertEqual(
            cow.overlay.file.writeCalls.load(ordering: .relaxed) - before, 3,
            "head, the run of four whole blocks, tail: one write each (not one per block)")
        XCTAssertEqual(cow.overlay.presentBlocks, 6)
        XCTAssertTrue(log.all.allSatisfy { $0.command == .read }, "sent below: \(log.all)")
        try await assertEqual({ try await cow.readBytes(data.count, at: UInt64(size - 100)) }, data)
        try await assertEqual(
            { try await cow.readBytes(size - 100, at: 0) }, bytes(9, size - 100), "the head block's rest")
    }

    func testReadsSpanningOverlayTrimmedAndBaseBlocksAreAssembledInOrder() async throws {
        let (cow, _, backend) = try await makeStack()
        try await seed(backend, 9)
        try await cow.writeBytes(bytes(1, 2 * 4096), at: 0)
        try await cow.trim(count: 4096, at: 3 * 4096, flags: [])
        try await cow.writeBytes(bytes(4), at: 4 * 4096)
        let expected = bytes(1, 2 * 4096 - 100) + bytes(9) + bytes(0) + bytes(4) + bytes(9, 200)
        try await assertEqual({ try await cow.readBytes(expected.count, at: 100) }, expected)
    }

    func testTheOverlayIsWritableOverAReadOnlyLayer() async throws {
        let (cow, _, _) = try await makeStack()
        XCTAssertTrue(cow.capabilities.isWritable)
        XCTAssertTrue(cow.capabilities.canTrim)
        XCTAssertTrue(cow.capabilities.canZero)
        XCTAssertFalse(cow.capabilities.canFastZero, "fast zero is always refused, so it is not advertised")
        XCTAssertTrue(cow.capabilities.canFlush)
        XCTAssertEqual(cow.capabilities.fua, .native)
        XCTAssertEqual(cow.capabilities.cache, .native)
        XCTAssertTrue(cow.capabilities.canMultiConn)
        XCTAssertEqual(cow.capabilities.blockSize.preferred, 4096)
    }

    func testBlockStatusReportsOverlayBlocksAsDataAndTrimmedBlocksAsHoles() async throws {
        let below = Capabilities(size: 1 << 20, isWritable: false, canExtents: true)
        let backend = TestMemoryBackend(capabilities: below)
        let overlay = try COWOverlay(
            exportSize: below.size, configuration: COWConfiguration(blockSize: 4096, directory: directory))
        let cow = COWFilter(wrapping: HoleFilter(next: backend), overlay: overlay)
        try await cow.writeBytes(bytes(1, 10), at: 4096 + 7)
        try await cow.trim(count: 8192, at: 12288, flags: [])
        let extents = try await cow.extents(count: 32768, at: 0, flags: [])
        XCTAssertEqual(extents, [.hole(4096), .data(4096), .hole(32768 - 8192)])
        let detailed = try await cow.extents(count: 32768, at: 0, flags: [])
        XCTAssertEqual(detailed.reduce(0) { $0 + $1.length }, 32768)
        XCTAssertEqual(overlay.state(of: 3), .trimmed)
    }

    func testZeroWithNoHoleAllocatesAndFastZeroIsRefused() async throws {
        let (cow, _, backend) = try await makeStack()
        try await seed(backend)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await cow.zero(count: 4096, at: 0, flags: .fastZero) },
            code: .notSupported)
        try await cow.zero(count: 4096, at: 0, flags: .noHole)
        XCTAssertEqual(cow.overlay.state(of: 0), .allocated)
        try await assertEqual({ try await cow.readBytes(4096, at: 0) }, bytes(0))
        let extents = try await cow.extents(count: 4096, at: 0, flags: [])
        XCTAssertEqual(extents, [.data(4096)], "NO_HOLE zeroes are allocated data, not a hole")
    }

    func testCowOnReadCopiesReadBlocksIntoTheOverlay() async throws {
        let (cow, log, backend) = try await makeStack(COWConfiguration(blockSize: 4096, cowOnRead: true))
        try await seed(backend)
        _ = try await cow.readBytes(100, at: 5000)
        _ = try await cow.readBytes(100, at: 5000)
        XCTAssertEqual(log.count(of: .read), 1)
        XCTAssertEqual(cow.overlay.state(of: 1), .allocated)
    }

    func testCowOnCacheCopiesCacheRequestsIntoTheOverlay() async throws {
        let (cow, _, backend) = try await makeStack(COWConfiguration(blockSize: 4096, onCache: true))
        try await seed(backend)
        try await cow.cache(count: 4097, at: 0, flags: [])
        XCTAssertEqual(cow.overlay.presentBlocks, 2)
        let (plain, log, _) = try await makeStack()
        try await plain.cache(count: 4096, at: 0, flags: [])
        XCTAssertEqual(plain.overlay.presentBlocks, 0)
        XCTAssertEqual(log.count(of: .read), 0, "a layer below without cache support is not asked")
    }

    func testConnectionsShareOneOverlay() async throws {
        let layer = try COWLayer(configuration: COWConfiguration(blockSize: 4096, directory: directory))
        let backend = AnyBlockBackend(TestMemoryBackend(capabilities: Capabilities(size: 1 << 20, isWritable: false)))
        let first = try await layer.wrap(backend, for: ConnectionInfo())
        let second = try await layer.wrap(backend, for: ConnectionInfo())
        try await first.writeBytes(bytes(5, 10), at: 0)
        try await assertEqual({ try await second.readBytes(10, at: 0) }, bytes(5, 10))
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: directory), [], "the overlay file has no name")
    }

    func testAFullOverlayFailsWithENOSPCAndKeepsServing() async throws {
        let (cow, _, backend) = try await makeStack()
        try await seed(backend)
        cow.overlay.file.injectedWriteError.store(ENOSPC, ordering: .relaxed)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await cow.writeBytes(self.bytes(1, 10), at: 0) },
            code: .noSpace)
        XCTAssertNil(cow.overlay.state(of: 0))
        try await assertEqual({ try await cow.readBytes(10, at: 0) }, bytes(0xAA, 10))
        cow.overlay.file.injectedWriteError.store(0, ordering: .relaxed)
        try await cow.writeBytes(bytes(1, 10), at: 0)
        try await assertEqual({ try await cow.readBytes(11, at: 0) }, bytes(1, 10) + [0xAA])
    }

    func testParametersUseNbdkitsNames() throws {
        let layer = try COWLayer(parameters: ["cow-block-size": "128K", "cow-on-cache": "true", "cow-on-read": "/x"])
        XCTAssertEqual(layer.configuration.blockSize, 128 << 10)
        XCTAssertTrue(layer.configuration.onCache)
        XCTAssertEqual(try COWLayer(parameters: [:]).configuration.blockSize, 65536)
        XCTAssertTrue(COWLayer.opensLayerBelowReadOnly)
        for (key, value) in [
            ("cow-block-size", "1000"), ("cow-block-size", "2K"), ("cow-on-cache", "maybe"), ("cow-on-read", "x"),
        ] {
            XCTAssertThrowsError(try COWLayer(parameters: [key: value])) { error in
                XCTAssertTrue("\(error)".contains(key), "\(error) does not name \(key)")
            }
        }
    }
}

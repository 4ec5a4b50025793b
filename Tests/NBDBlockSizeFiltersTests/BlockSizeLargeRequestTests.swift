import NBDBackends
import NBDBlockSizeFilters
import NBDCore
import NBDTestSupport
import XCTest

/// Zero, trim, cache and block status requests above 4 GiB (one request with extended headers)
/// through blocksize and blocksize-policy, over a sparse 16 GiB memory export: nothing is written
/// for real, so these stay fast and light.
final class BlockSizeLargeRequestTests: XCTestCase {
    static let gib: UInt64 = 1 << 30
    static let exportSize: UInt64 = 16 << 30

    private func stack(_ layer: any FilterLayer, log: OperationLog) async throws -> AnyBlockBackend {
        try await FilterStack(
            [layer, RecordingLayer(log: log)], over: try MemoryBackendProvider(size: Self.exportSize)
        )
        .open(ConnectionInfo())
    }

    /// Writes a byte of `value` at each offset, so a zero can be seen to stop at its ends.
    private func mark(_ backend: AnyBlockBackend, _ offsets: [UInt64], _ value: UInt8 = 0xA5) async throws {
        for offset in offsets { try await backend.writeBytes([value], at: offset) }
    }

    func testAZeroAboveFourGiBIsSplitByMaxlenAndZeroesExactlyItsRange() async throws {
        let log = OperationLog()
        let backend = try await stack(try BlockSizeLayer(parameters: ["minblock": "4K", "maxlen": "1G"]), log: log)
        let start = Self.gib + 100
        let count = 5 * Self.gib + 1000
        let end = start + count
        try await mark(backend, [start - 1, start, 4 * Self.gib - 1, 4 * Self.gib, end - 1, end])
        log.reset()

        try await backend.zero(count: count, at: start, flags: [])

        let zeroes = log.all.filter { $0.command == .writeZeroes }
        XCTAssertEqual(zeroes.count, 5, "the aligned body is sent in maxlen pieces: \(zeroes)")
        XCTAssertTrue(zeroes.allSatisfy { $0.count <= Self.gib && $0.offset % 4096 == 0 && $0.count % 4096 == 0 })
        let bodyStart = (start + 4095) / 4096 * 4096
        let bodyEnd = end / 4096 * 4096
        XCTAssertEqual(zeroes.first?.offset, bodyStart)
        XCTAssertEqual(zeroes.reduce(0) { $0 + $1.count }, bodyEnd - bodyStart, "the pieces cover the body")
        for offset in [start, 4 * Self.gib - 1, 4 * Self.gib, end - 1] {
            try await assertEqual({ try await backend.readBytes(1, at: offset) }, [0], "byte at \(offset)")
        }
        for offset in [start - 1, end] {
            try await assertEqual({ try await backend.readBytes(1, at: offset) }, [0xA5], "byte at \(offset)")
        }
    }

    func testWithoutMaxlenAFiveGiBZeroIsSplitOnlyAtTheFourGiBDefault() async throws {
        let log = OperationLog()
        let backend = try await stack(try BlockSizeLayer(parameters: ["minblock": "4K"]), log: log)
        try await backend.zero(count: 5 * Self.gib, at: 2 * Self.gib, flags: [])
        let zeroes = log.all.filter { $0.command == .writeZeroes }
        XCTAssertEqual(zeroes.map(\.count), [4 * Self.gib - 4096, Self.gib + 4096])
        XCTAssertEqual(zeroes.map(\.offset), [2 * Self.gib, 6 * Self.gib - 4096])
    }

    func testAFiveGiBTrimDropsItsUnalignedEndsAndIsSplitByMaxlen() async throws {
        let log = OperationLog()
        let backend = try await stack(try BlockSizeLayer(parameters: ["minblock": "64K", "maxlen": "2G"]), log: log)
        try await backend.trim(count: 5 * Self.gib, at: 3 * Self.gib + 1, flags: [])
        let trims = log.all.filter { $0.command == .trim }
        XCTAssertEqual(trims.map(\.offset), [3 * Self.gib + 65536, 5 * Self.gib + 65536, 7 * Self.gib + 65536])
        XCTAssertEqual(trims.map(\.count), [2 * Self.gib, 2 * Self.gib, Self.gib - 65536])
    }

    func testAFiveGiBCacheRequestIsRoundedOutAndSplitByMaxdata() async throws {
        let log = OperationLog()
        let backend = try await stack(
            try BlockSizeLayer(parameters: ["minblock": "4K", "maxdata": "512M", "maxlen": "1G"]), log: log)
        try await backend.cache(count: 5 * Self.gib, at: 4 * Self.gib - 10, flags: [])
        let caches = log.all.filter { $0.command == .cache }
        XCTAssertGreaterThanOrEqual(caches.count, 11, "maxdata, lowered to the layer below's maximum payload")
        XCTAssertEqual(caches.first?.offset, 4 * Self.gib - 4096)
        XCTAssertEqual(caches.reduce(0) { $0 + $1.count }, 5 * Self.gib + 4096)
        XCTAssertTrue(caches.allSatisfy { $0.count <= 512 << 20 })
    }

    func testBlockStatusAcrossFourGiBReportsARunLongerThanMaxlenAsOneExtent() async throws {
        let log = OperationLog()
        let backend = try await stack(try BlockSizeLayer(parameters: ["minblock": "4K"]), log: log)
        try await backend.writeBytes([UInt8](repeating: 1, count: 4096), at: 6 * Self.gib)
        // Starts mid-block: the layer below is asked from the block's start, the reply is cut back;
        // maxlen (4 GiB - 4 KiB by default) bounds each request below, so it is asked twice.
        let extents = try await backend.extents(count: 5 * Self.gib, at: Self.gib + 100, flags: [])
        XCTAssertEqual(extents, [.hole(5 * Self.gib - 100), .data(100)])
        let asked = log.all.filter { $0.command == .blockStatus }
        XCTAssertEqual(asked.map(\.offset), [Self.gib, 5 * Self.gib - 4096])
        XCTAssertTrue(asked.allSatisfy { $0.count <= UInt64(UInt32.max) }, "\(asked)")

        let one = try await backend.extents(count: 5 * Self.gib, at: Self.gib + 100, flags: .requestOne)
        XCTAssertEqual(one, [.hole(4 * Self.gib - 4096 - 100)], "REQ_ONE asks the layer below once")
    }

    func testBlockSizePolicyPassesAFiveGiBZeroAndBlockStatusThroughWhole() async throws {
        let log = OperationLog()
        let backend = try await stack(
            try BlockSizePolicyLayer(parameters: ["blocksize-minimum": "4K", "blocksize-error-policy": "error"]),
            log: log)
        try await backend.zero(count: 5 * Self.gib, at: 3 * Self.gib, flags: [])
        try await backend.trim(count: 5 * Self.gib, at: 3 * Self.gib, flags: [])
        try await backend.writeBytes([UInt8](repeating: 1, count: 4096), at: 9 * Self.gib)
        let extents = try await backend.extents(count: 7 * Self.gib + 4096, at: 2 * Self.gib, flags: [])
        XCTAssertEqual(Array(extents.prefix(2)), [.hole(7 * Self.gib), .data(4096)])
        XCTAssertEqual(log.all.filter { $0.command == .writeZeroes }.map(\.count), [5 * Self.gib])
        XCTAssertEqual(log.all.filter { $0.command == .trim }.map(\.count), [5 * Self.gib])
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.zero(count: 5 * Self.gib + 1, at: 0, flags: []) },
            code: .invalidArgument)
    }
}

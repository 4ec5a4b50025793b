import NBDCore
import NBDDataBackends
import NBDTestSupport
import XCTest

/// null, zero, full, ones and pattern: their bytes, what they do with writes, and their
/// capabilities as nbdkit's plugins of the same names advertise them.
final class GeneratedBackendsTests: XCTestCase {
    func testNullReadsZeroesDiscardsWritesAndReportsOneHole() async throws {
        let backend = try await NullBackendProvider(size: 1 << 20).open(ConnectionInfo())
        try await backend.writeBytes([1, 2, 3], at: 10)
        let bytes = try await backend.readBytes(4096, at: 8)
        XCTAssertEqual(bytes, [UInt8](repeating: 0, count: 4096))
        try await backend.zero(count: 100, at: 0, flags: [.fastZero])
        try await backend.trim(count: 100, at: 0, flags: [])
        let extents = try await backend.extents(count: 1 << 20, at: 0, flags: [])
        XCTAssertEqual(extents, [.hole(1 << 20)])
        XCTAssertTrue(backend.capabilities.canMultiConn)
        XCTAssertTrue(backend.capabilities.canFastZero)
        XCTAssertEqual(backend.capabilities.fua, .native)
    }

    func testNullDefaultsToAnEmptyExportAndIsReadOnlyForReadOnlyConnections() async throws {
        let provider = try await NullBackendProvider(parameters: [:], options: BackendOptions())
        XCTAssertEqual(provider.size, 0)
        let backend = try await NullBackendProvider(size: 512).open(ConnectionInfo(isReadOnly: true))
        XCTAssertFalse(backend.capabilities.isWritable)
        XCTAssertFalse(backend.capabilities.canZero)
    }

    func testZeroIsAnEmptyReadOnlyExport() async throws {
        let backend = try await ZeroBackendProvider().open(ConnectionInfo())
        XCTAssertEqual(backend.capabilities.size, 0)
        XCTAssertFalse(backend.capabilities.isWritable)
        XCTAssertEqual(backend.capabilities.cache, .native)
        let empty = try await backend.readBytes(0, at: 0)
        XCTAssertEqual(empty, [])
    }

    func testFullReadsZeroesAndFailsWritesZeroesAndTrimsWithENOSPC() async throws {
        let backend = try await FullBackendProvider(size: 1 << 20).open(ConnectionInfo())
        let bytes = try await backend.readBytes(100, at: 5)
        XCTAssertEqual(bytes, [UInt8](repeating: 0, count: 100))
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .noSpace)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.zero(count: 1, at: 0, flags: []) }, code: .noSpace)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.trim(count: 1, at: 0, flags: []) }, code: .noSpace)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.zero(count: 1, at: 0, flags: [.fastZero]) }, code: .notSupported)
        let extents = try await backend.extents(count: 4096, at: 0, flags: [])
        XCTAssertEqual(extents, [.hole(4096)])
        XCTAssertFalse(backend.capabilities.canFlush)
    }

    func testOnesReadsFFByDefaultAndTheByteParameterOtherwise() async throws {
        let ones = try await OnesBackendProvider(parameters: ["size": "1M"], options: BackendOptions())
        let backend = try await ones.open(ConnectionInfo())
        try await backend.writeBytes([0, 0], at: 0)
        try await backend.zero(count: 10, at: 0, flags: [])
        let bytes = try await backend.readBytes(10, at: 0)
        XCTAssertEqual(bytes, [UInt8](repeating: 0xff, count: 10), "writes and zeroes are discarded")
        let extents = try await backend.extents(count: 100, at: 0, flags: [])
        XCTAssertEqual(extents, [.data(100)])
        for (text, byte) in [("0x55", UInt8(0x55)), ("017", 0o17), ("200", 200), ("0", 0)] {
            let provider = try await OnesBackendProvider(
                parameters: ["size": "4K", "byte": text], options: BackendOptions())
            let read = try await provider.open(ConnectionInfo()).readBytes(3, at: 4000)
            XCTAssertEqual(read, [byte, byte, byte], text)
        }
    }

    func testPatternHoldsEachWordsOffsetBigEndianAtAnyAlignment() async throws {
        let backend = try await PatternBackendProvider(size: 1 << 20).open(ConnectionInfo())
        func expected(_ offset: UInt64, _ count: Int) -> [UInt8] {
            (0..<UInt64(count)).map { index in
                let position = offset + index
                return UInt8(truncatingIfNeeded: (position & ~7) >> ((7 - (position & 7)) * 8))
            }
        }
        for (offset, count) in [(0, 16), (3, 2), (5, 30), (4096, 4096), (0x1234_5, 7), (1_048_570, 6), (9, 0)] {
            let bytes = try await backend.readBytes(count, at: UInt64(offset))
            XCTAssertEqual(bytes, expected(UInt64(offset), count), "offset \(offset), \(count) bytes")
        }
        let word = try await backend.readBytes(8, at: 0x28)
        XCTAssertEqual(word, [0, 0, 0, 0, 0, 0, 0, 0x28])
        XCTAssertFalse(backend.capabilities.isWritable)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .notPermitted)
    }

    func testPatternReadsNearTheLargestExportWithoutOverflow() async throws {
        let size = UInt64(Int64.max)
        let backend = try await PatternBackendProvider(size: size).open(ConnectionInfo())
        let bytes = try await backend.readBytes(7, at: size - 7)
        // The last word starts at 0x7fff_ffff_ffff_fff8 and is cut to its first 7 bytes.
        XCTAssertEqual(bytes, [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }
}

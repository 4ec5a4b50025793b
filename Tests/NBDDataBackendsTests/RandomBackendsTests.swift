import NBDCore
import NBDDataBackends
import NBDTestSupport
import XCTest

/// random and sparse-random: the same bytes and map as nbdkit 1.32 serves for the same seed (the
/// expected values were read from nbdkit), and writes checked against the data.
final class RandomBackendsTests: XCTestCase {
    func testRandomServesNbdkitsBytesForASeed() async throws {
        let backend = try await RandomBackendProvider(size: 1 << 20, seed: 42).open(ConnectionInfo())
        let start = try await backend.readBytes(16, at: 0)
        XCTAssertEqual(start, [161, 103, 48, 226, 28, 182, 248, 117, 13, 198, 174, 1, 79, 42, 70, 228])
        let later = try await backend.readBytes(8, at: 1_000_000)
        XCTAssertEqual(later, [106, 230, 173, 64, 32, 122, 194, 44])
        let unaligned = try await backend.readBytes(3, at: 5)
        XCTAssertEqual(unaligned, [182, 248, 117])
    }

    func testRandomAcceptsOnlyWritesOfItsOwnDataAndRefusesZeroAndTrim() async throws {
        let backend = try await RandomBackendProvider(size: 1 << 20, seed: 42).open(ConnectionInfo())
        let data = try await backend.readBytes(4096, at: 8192)
        try await backend.writeBytes(data, at: 8192)
        var changed = data
        changed[100] ^= 1
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.writeBytes(changed, at: 8192) }, code: .ioError)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.zero(count: 1, at: 0, flags: []) }, code: .ioError)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.trim(count: 1, at: 0, flags: []) }, code: .ioError)
    }

    func testRandomSeedParameterIsCheckedAndDefaultsToDifferentRuns() async throws {
        let provider = try await RandomBackendProvider(
            parameters: ["size": "1M", "seed": "0x10"], options: BackendOptions())
        XCTAssertEqual(provider.seed, 16)
        for bad in ["-1", "4294967296", "x", ""] {
            let error = await XCTAssertThrowsNBDError(
                { () throws(NBDError) in
                    try await RandomBackendProvider(parameters: ["size": "1M", "seed": bad], options: BackendOptions())
                },
                code: .invalidArgument)
            XCTAssertTrue(error?.message.contains("seed=") ?? false, error?.message ?? "")
        }
    }

    func testSparseRandomDrawsNbdkitsMapAndDataForASeed() async throws {
        let provider = try SparseRandomBackendProvider(size: 64 << 20, seed: 7, percent: 30, runLength: 262_144)
        XCTAssertEqual(provider.dataBlockCount * 4096, 20_779_008)
        let backend = try await provider.open(ConnectionInfo())
        let extents = try await backend.extents(count: 64 << 20, at: 0, flags: [])
        XCTAssertEqual(
            Array(extents.prefix(6)),
            [.hole(532_480), .data(405_504), .hole(180_224), .data(344_064), .hole(303_104), .data(610_304)])
        let first = try await backend.readBytes(4, at: 532_480)
        XCTAssertEqual(first, [98, 98, 98, 98])
        let second = try await backend.readBytes(4, at: 1_118_208)
        XCTAssertEqual(second, [101, 101, 101, 101])
        let hole = try await backend.readBytes(4096, at: 0)
        XCTAssertEqual(hole, [UInt8](repeating: 0, count: 4096))
    }

    func testSparseRandomRandomContentMatchesNbdkitAndUnalignedReadsAgree() async throws {
        let provider = try SparseRandomBackendProvider(size: 1 << 20, seed: 7, percent: 100, randomContent: true)
        let backend = try await provider.open(ConnectionInfo())
        let start = try await backend.readBytes(8, at: 0)
        XCTAssertEqual(start, [90, 210, 150, 64, 24, 73, 84, 220])
        let third = try await backend.readBytes(8, at: 8192)
        XCTAssertEqual(third, [73, 205, 103, 101, 210, 223, 230, 87])
        let whole = try await backend.readBytes(12288, at: 0)
        let middle = try await backend.readBytes(5000, at: 3000)
        XCTAssertEqual(
            Array(whole[3000..<8000]), middle, "a read across blocks returns the same bytes as aligned reads")
    }

    func testSparseRandomChecksWritesAndAllowsZeroAndTrimOnlyOverHoles() async throws {
        let backend = try await SparseRandomBackendProvider(size: 64 << 20, seed: 7, percent: 30, runLength: 262_144)
            .open(ConnectionInfo())
        let data = try await backend.readBytes(8192, at: 532_480 - 4096)
        try await backend.writeBytes(data, at: 532_480 - 4096)
        var changed = data
        changed[5000] = 0
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.writeBytes(changed, at: 532_480 - 4096) }, code: .ioError)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .ioError)
        try await backend.zero(count: 532_480, at: 0, flags: [])
        try await backend.trim(count: 4096, at: 4096, flags: [])
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.zero(count: 4097, at: 528_384, flags: []) }, code: .ioError)
        let one = try await backend.extents(count: 1 << 20, at: 100, flags: [.requestOne])
        XCTAssertEqual(one, [.hole(532_380)])
    }

    func testSparseRandomEdgePercentagesAndBadParameters() async throws {
        let empty = try SparseRandomBackendProvider(size: 1 << 20, seed: 1, percent: 0)
        XCTAssertEqual(empty.dataBlockCount, 0)
        let full = try SparseRandomBackendProvider(size: (1 << 20) + 1, seed: 1, percent: 100)
        XCTAssertEqual(full.dataBlockCount, 257)
        let bytes = try await full.open(ConnectionInfo()).readBytes(2, at: 1 << 20)
        XCTAssertEqual(bytes.count, 2)
        XCTAssertNotEqual(bytes[0], 0, "data bytes are never zero")
        for (key, value) in [
            ("percent", "101"), ("percent", "-1"), ("percent", "ten"), ("runlength", "0"), ("random-content", "maybe"),
        ] {
            let error = await XCTAssertThrowsNBDError(
                { () throws(NBDError) in
                    try await SparseRandomBackendProvider(
                        parameters: ParameterValues([.init(key: "size", value: "1M"), .init(key: key, value: value)]),
                        options: BackendOptions())
                }, code: .invalidArgument)
            XCTAssertTrue(error?.message.contains("\(key)=") ?? false, error?.message ?? "")
        }
    }
}

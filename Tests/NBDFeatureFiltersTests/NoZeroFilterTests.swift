import NBDCore
import NBDFeatureFilters
import NBDTestSupport
import XCTest

/// The nozero filter's modes: what is advertised and what reaches the layer below.
final class NoZeroFilterTests: XCTestCase {
    typealias Stack = NoZeroFilter<RecordingFilter<TestMemoryBackend>>

    func makeStack(
        _ zeroMode: ZeroMode, _ fastZeroMode: FastZeroMode = .default, below: Capabilities = Capabilities(size: 1 << 20)
    ) throws(NBDError) -> (Stack, OperationLog, TestMemoryBackend) {
        let backend = TestMemoryBackend(capabilities: below)
        let log = OperationLog()
        let filter = try NoZeroFilter(
            wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1), zeroMode: zeroMode,
            fastZeroMode: fastZeroMode, connection: ConnectionInfo(id: 1))
        return (filter, log, backend)
    }

    func testNoneModeAdvertisesNeitherZeroNorFastZero() throws {
        let (filter, _, _) = try makeStack(.none)
        XCTAssertFalse(filter.capabilities.canZero)
        XCTAssertFalse(filter.capabilities.canFastZero)
    }

    func testEmulateModeWritesZeroBuffersAndFailsFastZeroes() async throws {
        let (filter, log, backend) = try makeStack(.emulate)
        XCTAssertTrue(filter.capabilities.canZero)
        XCTAssertTrue(filter.capabilities.canFastZero)
        try await backend.writeBytes([UInt8](repeating: 9, count: 8192), at: 0)
        try await filter.zero(count: 8192, at: 0, flags: .fua)
        XCTAssertEqual(log.count(of: .writeZeroes), 0)
        XCTAssertEqual(log.all.map(\.command), [.write])
        XCTAssertEqual(log.all.map { $0.flags.contains(.fua) }, [true])
        let bytes = try await backend.readBytes(8192, at: 0)
        XCTAssertEqual(bytes, [UInt8](repeating: 0, count: 8192))
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await filter.zero(count: 4096, at: 0, flags: .fastZero) },
            code: .notSupported)
    }

    func testEmulateModeSplitsLargeZeroesIntoChunks() async throws {
        let (filter, log, _) = try makeStack(.emulate, below: Capabilities(size: 8 << 20))
        try await filter.zero(count: 5 << 20, at: 0, flags: [])
        XCTAssertEqual(log.all.map(\.count), [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20])
    }

    func testEmulateWithFastZeroNoneDoesNotAdvertiseFastZero() throws {
        XCTAssertFalse(try makeStack(.emulate, .none).0.capabilities.canFastZero)
    }

    func testNotrimModeAddsNoHole() async throws {
        let (filter, log, _) = try makeStack(.notrim)
        try await filter.zero(count: 4096, at: 0, flags: [])
        XCTAssertEqual(log.all.map { $0.flags.contains(.noHole) }, [true])
    }

    func testPluginModePassesZeroesUnchangedAndFastZeroModesApply() async throws {
        let (plain, log, _) = try makeStack(.plugin)
        try await plain.zero(count: 4096, at: 0, flags: .fastZero)
        XCTAssertEqual(log.all.map(\.flags), [.fastZero])

        let (slow, slowLog, _) = try makeStack(.plugin, .slow)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await slow.zero(count: 4096, at: 0, flags: .fastZero) },
            code: .notSupported)
        XCTAssertEqual(slowLog.all.count, 0)

        let (ignore, ignoreLog, _) = try makeStack(.plugin, .ignore)
        try await ignore.zero(count: 4096, at: 0, flags: .fastZero)
        XCTAssertEqual(ignoreLog.all.map(\.flags), [[]])

        XCTAssertFalse(try makeStack(.plugin, .none).0.capabilities.canFastZero)
        XCTAssertFalse(
            try makeStack(.plugin, below: Capabilities(size: 1 << 20, canFastZero: false)).0.capabilities.canFastZero)
    }

    func testPluginAndNotrimNeedZeroSupportBelowUnlessReadOnly() throws {
        let bare = Capabilities(size: 1 << 20, canZero: false, canFastZero: false)
        for mode in [ZeroMode.plugin, .notrim] {
            XCTAssertThrowsError(try makeStack(mode, below: bare)) { error in
                XCTAssertTrue("\(error)".contains("zeromode '\(mode)'"), "\(error)")
            }
        }
        XCTAssertNoThrow(
            try NoZeroFilter(
                wrapping: TestMemoryBackend(capabilities: bare), zeroMode: .plugin,
                connection: ConnectionInfo(isReadOnly: true)))
    }

    func testLayerParsesModesAndNamesTheParameterInErrors() throws {
        let layer = try NoZeroLayer(parameters: ["zeromode": "emulate", "fastzeromode": "ignore"])
        XCTAssertEqual(layer.zeroMode, .emulate)
        XCTAssertEqual(layer.fastZeroMode, .ignore)
        XCTAssertThrowsError(try NoZeroLayer(parameters: ["zeromode": "sometimes"])) { error in
            XCTAssertTrue("\(error)".contains("zeromode=sometimes"), "\(error)")
        }
    }
}

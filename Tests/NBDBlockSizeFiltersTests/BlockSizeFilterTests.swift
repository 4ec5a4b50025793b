import NBDBackends
import NBDBlockSizeFilters
import NBDCore
import NBDTestSupport
import XCTest

final class BlockSizeFilterTests: XCTestCase {
    private func stack(
        _ parameters: ParameterValues, size: UInt64 = 1 << 20, log: OperationLog
    ) async throws -> AnyBlockBackend {
        let layers: [any FilterLayer] = [try BlockSizeLayer(parameters: parameters), RecordingLayer(log: log)]
        return try await FilterStack(layers, over: try MemoryBackendProvider(size: size)).open(ConnectionInfo())
    }

    private func assertAligned(
        _ log: OperationLog, block: UInt64, maxData: UInt64, maxLength: UInt64 = .max,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertFalse(log.all.isEmpty, "nothing reached the layer below", file: file, line: line)
        for entry in log.all where entry.command != .flush {
            XCTAssertEqual(
                entry.offset % block, 0, "unaligned offset reached the layer below: \(entry)", file: file, line: line)
            XCTAssertEqual(
                entry.count % block, 0, "unaligned length reached the layer below: \(entry)", file: file, line: line)
            let limit = entry.command == .read || entry.command == .write ? maxData : maxLength
            XCTAssertLessThanOrEqual(
                entry.count, limit, "too large for the layer below: \(entry)", file: file, line: line)
        }
    }

    func testRandomUnalignedRequestsMatchAModelAndReachTheLayerBelowAligned() async throws {
        let log = OperationLog()
        let size: UInt64 = 64 << 10
        let backend = try await stack(["minblock": "512", "maxdata": "2K", "maxlen": "4K"], size: size, log: log)
        var model = [UInt8](repeating: 0, count: Int(size))
        var random = SeededGenerator(seed: 14)
        for step in 0..<300 {
            let offset = UInt64.random(in: 0..<(size - 1), using: &random)
            let count = Int.random(in: 1...Int(min(9000, size - offset)), using: &random)
            switch step % 3 {
            case 0:
                let bytes = (0..<count).map { _ in UInt8.random(in: 1...255, using: &random) }
                try await backend.writeBytes(bytes, at: offset)
                model.replaceSubrange(Int(offset)..<(Int(offset) + count), with: bytes)
            case 1:
                try await backend.zero(count: UInt64(count), at: offset, flags: [])
                model.replaceSubrange(Int(offset)..<(Int(offset) + count), with: repeatElement(0, count: count))
            default:
                let read = try await backend.readBytes(count, at: offset)
                XCTAssertEqual(
                    read, Array(model[Int(offset)..<(Int(offset) + count)]), "read \(count)@\(offset), step \(step)")
            }
        }
        let whole = try await backend.readBytes(Int(size), at: 0)
        XCTAssertEqual(whole, model)
        assertAligned(log, block: 512, maxData: 2048, maxLength: 4096)
    }

    func testTrimDropsTheUnalignedHeadAndTailAndIsSplitByMaxlen() async throws {
        let log = OperationLog()
        let backend = try await stack(["minblock": "4K", "maxlen": "8K"], log: log)
        try await backend.trim(count: 30000, at: 100, flags: [])
        XCTAssertEqual(
            log.all.map { "\($0.command) \($0.count)@\($0.offset)" },
            ["trim 8192@4096", "trim 8192@12288", "trim 8192@20480"])
        log.reset()
        try await backend.trim(count: 1000, at: 100, flags: [])
        XCTAssertTrue(log.all.isEmpty, "a trim within one block is dropped: \(log.all)")
    }

    func testFastZeroThatNeedsReadModifyWriteFailsAtOnce() async throws {
        let log = OperationLog()
        let backend = try await stack(["minblock": "512"], log: log)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.zero(count: 100, at: 512, flags: .fastZero) },
            code: .notSupported)
        XCTAssertTrue(log.all.isEmpty, "nothing reaches the layer below: \(log.all)")
        try await backend.zero(count: 1024, at: 512, flags: .fastZero)
        XCTAssertEqual(log.all.map(\.command), [.writeZeroes])
    }

    func testCapabilitiesRoundTheSizeDownAndAdvertiseAnythingGoes() async throws {
        let backend = try await stack(["minblock": "4K"], size: 10000, log: OperationLog())
        XCTAssertEqual(backend.capabilities.size, 8192)
        XCTAssertEqual(backend.capabilities.blockSize.minimum, 1)
        XCTAssertEqual(backend.capabilities.blockSize.preferred, 4096)
        let larger = try await stack(["minblock": "64K"], log: OperationLog())
        XCTAssertEqual(larger.capabilities.blockSize.preferred, 65536)
    }

    func testExtentsAreAskedInWholeBlocksAndCutToTheRequest() async throws {
        let log = OperationLog()
        let backend = try await stack(["minblock": "4K"], log: log)
        try await backend.writeBytes([1], at: 8192)
        let extents = try await backend.extents(count: 10000, at: 5000, flags: [])
        XCTAssertEqual(log.all.last?.offset, 4096)
        XCTAssertEqual(extents.reduce(0) { $0 + $1.length }, 10000, "\(extents)")
    }

    func testFUAOverEmulatedFUAFlushesOnceAfterTheLastPiece() async throws {
        let log = OperationLog()
        let provider = TestProvider(capabilities: Capabilities(size: 1 << 20, fua: .emulated))
        let layers: [any FilterLayer] = [try BlockSizeLayer(parameters: ["maxdata": "4K"]), RecordingLayer(log: log)]
        let backend = try await FilterStack(layers, over: provider).open(ConnectionInfo())
        try await backend.writeBytes([UInt8](repeating: 7, count: 16384), at: 0, flags: .fua)
        XCTAssertEqual(log.all.map(\.command), [.write, .write, .write, .write, .flush])
        XCTAssertTrue(log.all.allSatisfy { !$0.flags.contains(.fua) }, "\(log.all)")
    }

    func testLimitsFollowTheLayerBelowAsNbdkitComputesThem() throws {
        let below = BlockSizeConstraints(minimum: 4096, preferred: 4096, maximumPayload: 1 << 20)
        let raised = try BlockSizeLimits.resolved(minimumBlock: 512, maximumData: nil, maximumLength: nil, below: below)
        XCTAssertEqual(raised.minimumBlock, 4096, "minblock is raised to the layer below's minimum")
        XCTAssertEqual(raised.maximumData, 1 << 20, "maxdata is capped by the layer below's maximum")
        XCTAssertEqual(raised.maximumLength, UInt32.max / 4096 * 4096)
        let defaults = try BlockSizeLimits.resolved(
            minimumBlock: nil, maximumData: nil, maximumLength: 8 << 20,
            below: BlockSizeConstraints(maximumPayload: .max))
        XCTAssertEqual(defaults.minimumBlock, 1)
        XCTAssertEqual(defaults.maximumData, 8 << 20, "maxdata defaults to maxlen when that is below 64M")
        let nbdkitDefault = try BlockSizeLimits.resolved(
            minimumBlock: nil, maximumData: nil, maximumLength: nil, below: BlockSizeConstraints(maximumPayload: .max))
        XCTAssertEqual(nbdkitDefault.maximumData, 64 << 20)
    }

    func testParametersAreCheckedAndErrorsNameThem() {
        for (parameters, name) in [
            (["minblock": "1000"] as ParameterValues, "minblock"), (["minblock": "128K"], "minblock"),
            (["minblock": "512", "maxdata": "1000"], "maxdata"), (["minblock": "512", "maxlen": "1000"], "maxlen"),
            (["maxdata": "0"], "maxdata"), (["maxlen": "8G"], "maxlen"),
        ] {
            XCTAssertThrowsError(try BlockSizeLayer(parameters: parameters), "\(parameters)") { error in
                XCTAssertTrue("\(error)".contains(name), "\(error) does not name \(name)")
            }
        }
    }
}

/// A provider of ``TestMemoryBackend``s with the given capabilities, sharing nothing.
struct TestProvider: BackendProvider {
    let capabilities: Capabilities
    func open(_ connection: ConnectionInfo) async throws(NBDError) -> TestMemoryBackend {
        TestMemoryBackend(capabilities: capabilities)
    }
}

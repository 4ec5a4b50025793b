import Foundation
import NBDCore
import NBDFeatureFilters
import NBDTestSupport
import XCTest

/// The nofilter, readonly, rotational and swab filters.
final class PassThroughFeatureFilterTests: XCTestCase {
    func testNoFilterLayerHandsBackTheLayerBelowAndTheStaticFilterForwards() async throws {
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 4096, canExtents: true, isRotational: true))
        let below = AnyBlockBackend(backend)
        let wrapped = try await NoFilterLayer(parameters: [:]).wrap(below, for: ConnectionInfo())
        XCTAssertTrue((wrapped.base as AnyObject) === backend, "the layer adds nothing to the request path")
        let filter = NoFilter(wrapping: backend)
        XCTAssertEqual(filter.capabilities, backend.capabilities)
        try await filter.writeBytes([UInt8](repeating: 7, count: 8), at: 8)
        let value1 = try await filter.readBytes(8, at: 8)
        XCTAssertEqual(value1, [UInt8](repeating: 7, count: 8))
    }

    func testRotationalSetsAndClearsTheProperty() async throws {
        let spinning = TestMemoryBackend(capabilities: Capabilities(size: 4096, isRotational: true))
        let solid = TestMemoryBackend(size: 4096)
        XCTAssertTrue(RotationalFilter(wrapping: solid).capabilities.isRotational)
        XCTAssertFalse(RotationalFilter(wrapping: spinning, isRotational: false).capabilities.isRotational)
        let layer = try RotationalLayer(parameters: [:])
        let value2 = try await layer.wrap(AnyBlockBackend(solid), for: ConnectionInfo()).capabilities.isRotational
        XCTAssertTrue(value2)
        let off = try RotationalLayer(parameters: ["rotational": "false"])
        let value3 = try await off.wrap(AnyBlockBackend(spinning), for: ConnectionInfo()).capabilities.isRotational
        XCTAssertFalse(value3)
        XCTAssertThrowsError(try RotationalLayer(parameters: ["rotational": "sometimes"])) { error in
            XCTAssertTrue("\(error)".contains("rotational=sometimes"), "\(error)")
            XCTAssertTrue("\(error)".contains("true/false"), "\(error)")
        }
    }

    func testReadOnlyWithoutAFileAdvertisesReadOnlyAndRefusesWritesWithEPERM() async throws {
        let filter = ReadOnlyFilter(wrapping: TestMemoryBackend(size: 4096))
        XCTAssertFalse(filter.capabilities.isWritable)
        XCTAssertFalse(filter.capabilities.canTrim)
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await filter.zero(count: 512, at: 0, flags: []) }, code: .notPermitted)
    }

    func testReadOnlyFileSwitchesARunningExportBetweenWritableAndEPERM() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ro-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let switchFile = directory.appendingPathComponent("ro").path
        let layer = try ReadOnlyLayer(parameters: ["readonly-file": switchFile])
        let backend = TestMemoryBackend(size: 4096)
        let filter = try await layer.wrap(AnyBlockBackend(backend), for: ConnectionInfo())
        XCTAssertTrue(filter.capabilities.isWritable)
        let data = [UInt8](repeating: 1, count: 512)
        try await filter.writeBytes(data, at: 0, flags: [])
        XCTAssertTrue(FileManager.default.createFile(atPath: switchFile, contents: Data()))
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                try await filter.writeBytes(data, at: 0, flags: [])
            }, code: .notPermitted)
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await filter.trim(count: 512, at: 0, flags: []) }, code: .notPermitted)
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await filter.zero(count: 512, at: 0, flags: []) }, code: .notPermitted)
        try FileManager.default.removeItem(atPath: switchFile)
        try await filter.zero(count: 512, at: 0, flags: [])
    }

    func testReadOnlyFileGivenTwiceIsRefused() {
        XCTAssertThrowsError(try ReadOnlyLayer(parameters: ["readonly-file": "/a", "readonly-file": "/b"])) { error in
            XCTAssertTrue("\(error)".contains("readonly-file"), "\(error)")
        }
    }

    private func bytes(_ filter: some BlockBackend, _ count: Int, at offset: UInt64) async throws(NBDError) -> [UInt8] {
        try await filter.readBytes(count, at: offset)
    }

    func testSwabReversesEachWordOnReadAndWriteAndLeavesTheClientsBufferAlone() async throws {
        let backend = TestMemoryBackend(size: 1003)
        let original = (0..<16).map { UInt8($0) }
        try await backend.writeBytes(original, at: 0, flags: [])
        for (bits, expected) in [
            (8, original), (16, [1, 0, 3, 2, 5, 4, 7, 6] as [UInt8]), (32, [3, 2, 1, 0, 7, 6, 5, 4]),
            (64, [7, 6, 5, 4, 3, 2, 1, 0]),
        ] {
            let filter = SwabFilter(wrapping: backend, width: SwabWidth(bits: bits)!)
            let value4 = Array(try await bytes(filter, 16, at: 0).prefix(expected.count))
            XCTAssertEqual(value4, expected, "swab-bits=\(bits)")
            XCTAssertEqual(filter.capabilities.size, 1003 / UInt64(bits / 8) * UInt64(bits / 8))
            XCTAssertEqual(filter.capabilities.blockSize.minimum, UInt32(bits / 8))
        }
        let filter = SwabFilter(wrapping: backend, width: SwabWidth(bits: 32)!)
        let written: [UInt8] = [10, 11, 12, 13, 14, 15, 16, 17]
        try await filter.writeBytes(written, at: 8, flags: [])
        XCTAssertEqual(written, [10, 11, 12, 13, 14, 15, 16, 17])
        let value5 = try await bytes(backend, 8, at: 8)
        XCTAssertEqual(value5, [13, 12, 11, 10, 17, 16, 15, 14])
        let value6 = try await bytes(filter, 8, at: 8)
        XCTAssertEqual(value6, written)
    }

    func testSwabRefusesUnalignedRequestsWithEINVAL() async throws {
        let filter = SwabFilter(wrapping: TestMemoryBackend(size: 4096), width: SwabWidth(bits: 64)!)
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in _ = try await self.bytes(filter, 8, at: 4) }, code: .invalidArgument)
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await filter.zero(count: 12, at: 0, flags: []) }, code: .invalidArgument)
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await filter.trim(count: 8, at: 1, flags: []) }, code: .invalidArgument)
    }

    func testSwabAlignsExtentsSoAStraddlingWordIsData() {
        let width = SwabWidth(bits: 32)!
        XCTAssertEqual(width.aligned([.hole(6), .data(6), .hole(4)]), [.hole(4), .data(8), .hole(4)])
        XCTAssertEqual(width.aligned([.hole(8), .data(8)]), [.hole(8), .data(8)])
        XCTAssertEqual(width.aligned([.hole(2)]), [.data(4)])
        XCTAssertEqual(width.aligned([.hole(4), .hole(2)]), [.hole(4)])
    }

    func testSwabBitsParameterListsTheAcceptedValues() throws {
        XCTAssertEqual(try SwabLayer(parameters: [:]).width.bytes, 2)
        XCTAssertEqual(try SwabLayer(parameters: ["swab-bits": "64"]).width.bytes, 8)
        XCTAssertThrowsError(try SwabLayer(parameters: ["swab-bits": "24"])) { error in
            XCTAssertTrue("\(error)".contains("swab-bits=24: expected one of 8, 16, 32, 64"), "\(error)")
        }
    }
}

import Foundation
import NBDCore
import NBDDataBackends
import NBDTestSupport
import XCTest

/// The split backend: files joined end to end, requests cut at the boundaries.
final class SplitBackendTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("split-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = directory.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testReadsAndWritesCrossTheBoundariesBetweenFiles() async throws {
        let a = try file("a", Array(repeating: 1, count: 1000))
        let empty = try file("empty", [])
        let b = try file("b", Array(repeating: 2, count: 3000))
        let c = try file("c", Array(repeating: 3, count: 10))
        let provider = try SplitBackendProvider(paths: [a, empty, b, c])
        XCTAssertEqual(provider.size, 4010)
        let backend = try await provider.open(ConnectionInfo())
        let all = try await backend.readBytes(4010, at: 0)
        XCTAssertEqual(
            all, Array(repeating: 1, count: 1000) + Array(repeating: 2, count: 3000) + Array(repeating: 3, count: 10))
        try await backend.writeBytes(Array(repeating: 9, count: 3010), at: 999)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: a)).last, 9)
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: b))), Array(repeating: 9, count: 3000))
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: c))), Array(repeating: 9, count: 9) + [3])
        try await backend.zero(count: 20, at: 990, flags: [])
        let zeroed = try await backend.readBytes(22, at: 989)
        XCTAssertEqual(zeroed, [1] + Array(repeating: 0, count: 20) + [9])
        XCTAssertFalse(backend.capabilities.canFlush)
        XCTAssertFalse(backend.capabilities.canMultiConn)
        XCTAssertFalse(backend.capabilities.canTrim)
    }

    func testExtentsReportEachFilesHoles() async throws {
        let a = try file("a", Array(repeating: 1, count: 4096))
        let sparse = directory.appendingPathComponent("sparse").path
        XCTAssertTrue(FileManager.default.createFile(atPath: sparse, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: sparse))
        try handle.truncate(atOffset: 1 << 20)
        try handle.close()
        let backend = try await SplitBackendProvider(paths: [a, sparse]).open(ConnectionInfo())
        let extents = try await backend.extents(count: 4096 + (1 << 20), at: 0, flags: [])
        XCTAssertEqual(extents.first, .data(4096))
        XCTAssertEqual(extents.reduce(0) { $0 + $1.length }, 4096 + (1 << 20))
        let one = try await backend.extents(count: 1 << 20, at: 0, flags: [.requestOne])
        XCTAssertEqual(one, [.data(4096)])
    }

    func testReadOnlyAndBadFilesAreRefused() async throws {
        let a = try file("a", [1, 2, 3])
        let readOnly = try await SplitBackendProvider(
            parameters: ["file": a], options: BackendOptions(isReadOnly: true))
        let readOnlyBackend = try await readOnly.open(ConnectionInfo())
        XCTAssertFalse(readOnlyBackend.capabilities.isWritable)
        let missing = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try SplitBackendProvider(paths: [a, self.directory.appendingPathComponent("missing").path])
            },
            code: .invalidArgument)
        XCTAssertTrue(missing?.message.contains("missing") ?? false, missing?.message ?? "")
        let directoryError = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try SplitBackendProvider(paths: [self.directory.path]) }, code: .invalidArgument)
        XCTAssertTrue(directoryError?.message.contains("regular file") ?? false, directoryError?.message ?? "")
        // As nbdkit 1.32: no file is an empty export.
        let none = try await SplitBackendProvider(parameters: [:], options: BackendOptions())
        XCTAssertEqual(none.size, 0)
    }
}

import Foundation
import Glibc
import NBDBackends
import NBDCore
import NBDTestSupport
import XCTest

/// Zero, trim, cache and block status requests above 4 GiB (one request with extended headers)
/// against the memory backend and a sparse file: handled as one request, nothing sized by it.
final class LargeRequestBackendTests: XCTestCase {
    static let gib: UInt64 = 1 << 30

    private func check(_ backend: some BlockBackend, what: String) async throws {
        for offset in [2 * Self.gib - 1, 2 * Self.gib, 4 * Self.gib, 7 * Self.gib - 1, 7 * Self.gib] {
            try await backend.writeBytes([7], at: offset)
        }
        try await backend.zero(count: 5 * Self.gib, at: 2 * Self.gib, flags: [])
        try await backend.cache(count: 5 * Self.gib, at: 2 * Self.gib, flags: [])
        for (offset, value) in [(2 * Self.gib - 1, 7), (2 * Self.gib, 0), (4 * Self.gib, 0), (7 * Self.gib, 7)]
            as [(UInt64, UInt8)]
        {
            let read = try await backend.readBytes(1, at: offset)
            XCTAssertEqual(read, [value], "\(what): byte at \(offset)")
        }
        let extents = try await backend.extents(count: 5 * Self.gib, at: 2 * Self.gib, flags: [])
        XCTAssertEqual(extents.first?.flags, [.hole, .zero], "\(what): \(extents)")
        XCTAssertGreaterThan(extents.first?.length ?? 0, UInt64(UInt32.max), "\(what): one run above 4 GiB")

        try await backend.writeBytes([7], at: 5 * Self.gib)
        try await backend.trim(count: 5 * Self.gib, at: Self.gib, flags: [])
        let trimmed = try await backend.readBytes(1, at: 5 * Self.gib)
        XCTAssertEqual(trimmed, [0], "\(what): trimmed")
    }

    func testTheMemoryBackendZeroesTrimsAndDescribesFiveGiBInOneRequest() async throws {
        let backend = try await MemoryBackendProvider(size: 16 * Self.gib).open(ConnectionInfo())
        try await check(backend, what: "memory")
        XCTAssertLessThan(backend.allocatedBytes, 1 << 20)
    }

    func testTheFileBackendZeroesTrimsAndDescribesFiveGiBInOneRequest() async throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("nbd-large-request-\(UUID().uuidString).img").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(truncate(path, off_t(16 * Self.gib)), 0, String(cString: strerror(errno)))
        let backend = try await FileBackendProvider(path: path).open(ConnectionInfo())
        try await check(backend, what: "file")
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertLessThan(Int(info.st_blocks) * 512, 64 << 20, "the zero punched a hole, it wrote nothing")
    }
}

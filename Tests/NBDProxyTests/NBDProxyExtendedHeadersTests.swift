import Foundation
import NBDClient
import NBDCore
import NBDProxy
import NBDTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The `nbd` backend in front of a real upstream: qemu-nbd 10 (extended headers) gets a 5 GiB zero
/// or trim as one request; nbdkit 1.32 (compact headers only) gets it in pieces below 4 GiB.
///
/// Each upstream runs in the foreground as a child of the test, which waits (bounded) until its
/// socket accepts a connection and stops it by PID.
final class NBDProxyExtendedHeadersTests: XCTestCase {
    private static let gib: UInt64 = 1 << 30
    private var directory: String!
    private var children: [ChildServer] = []

    override func setUpWithError() throws {
        directory = "/tmp/nbd-proxy-ext-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        for child in children { child.stop() }
        children = []
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func skip(_ message: String) throws -> Never {
        if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" {
            XCTFail("NBD_INTEROP=required but \(message)")
        }
        throw XCTSkip(message)
    }

    /// Starts `executable` (which must listen on `socket`) and waits, bounded, until it accepts.
    private func start(_ executable: String, _ arguments: [String], socket: String) async throws {
        do {
            children.append(try await ChildServer.start(executable, arguments, socket: socket))
        } catch let error as ChildServer.DidNotStart {
            XCTFail("\(error)")
            throw XCTSkip("\(error)")
        }
    }

    private func sparseImage(_ size: UInt64) throws -> String {
        let path = directory + "/disk.img"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: size)
        try handle.close()
        return path
    }

    func testAFiveGiBZeroAndTrimReachQemuNbdAsOneRequestEach() async throws {
        let qemuNbd = try ToolRunner.require("qemu-nbd")
        let socket = directory + "/qemu.sock"
        try await start(qemuNbd, ["-k", socket, "-f", "raw", "-t", try sparseImage(8 * Self.gib)], socket: socket)
        let provider = try await NBDProxyProvider(endpoint: .unix(socket))
        let backend = try await provider.open(ConnectionInfo())
        guard backend.upstream.export.extendedHeaders else {
            try skip(
                "qemu-nbd older than 8.2 has no extended headers (Debian package qemu-utils from bookworm-backports)")
        }
        XCTAssertEqual(backend.capabilities.size, 8 * Self.gib)

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5a)
        try await backend.write(UnsafeRawBufferPointer(buffer), at: 5 * Self.gib, flags: .fua)
        var before = backend.upstream.requestsSent
        try await backend.zero(count: 5 * Self.gib, at: 1 * Self.gib, flags: [])
        XCTAssertEqual(backend.upstream.requestsSent - before, 1, "one upstream NBD_CMD_WRITE_ZEROES for 5 GiB")
        before = backend.upstream.requestsSent
        try await backend.trim(count: 5 * Self.gib, at: 2 * Self.gib, flags: [])
        XCTAssertEqual(backend.upstream.requestsSent - before, 1, "one upstream NBD_CMD_TRIM for 5 GiB")

        try await backend.read(into: buffer, at: 5 * Self.gib, flags: [])
        XCTAssertTrue(buffer.allSatisfy { $0 == 0 }, "zeroed upstream")
        let extents = try await backend.extents(count: 7 * Self.gib, at: 1 * Self.gib, flags: [])
        XCTAssertGreaterThan(extents.first?.length ?? 0, 4 * Self.gib, "one 64-bit extent: \(extents)")
        await backend.close()
    }

    func testAFiveGiBZeroReachesNbdkitInPiecesBelowFourGiB() async throws {
        let nbdkit = try ToolRunner.require("nbdkit")
        let socket = directory + "/nbdkit.sock"
        try await start(nbdkit, ["-f", "-U", socket, "memory", "8G"], socket: socket)
        let provider = try await NBDProxyProvider(endpoint: .unix(socket))
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertFalse(backend.upstream.export.extendedHeaders)
        let before = backend.upstream.requestsSent
        try await backend.zero(count: 5 * Self.gib, at: 1 * Self.gib, flags: [])
        XCTAssertEqual(backend.upstream.requestsSent - before, 2)
        await backend.close()
    }
}

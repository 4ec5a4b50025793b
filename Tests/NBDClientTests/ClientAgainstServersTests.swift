import NBDBackends
import NBDClient
import NBDCore
import NBDServer
import NBDTestSupport
import XCTest

/// The client against real servers: this package's NBDServer in-process, nbdkit and qemu-nbd as
/// child processes. Each server gets the same exercise of every command.
final class ClientAgainstServersTests: ClientTestCase {
    /// Writes, reads back, zeroes, trims, flushes, caches and asks block status; checks the data.
    private func exercise(_ connection: NBDConnection, file: StaticString = #filePath, line: UInt = #line) async throws
    {
        let pattern = (0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try await connection.write(pattern, at: 4096, flags: connection.export.canFUA ? .fua : [])
        let back = try await connection.read(count: 65536, at: 4096)
        XCTAssertEqual(back, pattern, "read after write", file: file, line: line)
        if connection.export.canFlush { try await connection.flush() }
        if connection.export.canZero {
            try await connection.zero(count: 4096, at: 8192, flags: .noHole)
            let zeroed = try await connection.read(count: 4096, at: 8192)
            XCTAssertEqual(zeroed, [UInt8](repeating: 0, count: 4096), "zeroed range", file: file, line: line)
        }
        if connection.export.canTrim { try await connection.trim(count: 4096, at: 65536) }
        if connection.export.canCache { try await connection.cache(count: 4096, at: 0) }
        if connection.export.canBlockStatus {
            let extents = try await connection.blockStatus(count: 1 << 20, at: 0)
            XCTAssertFalse(extents.isEmpty, file: file, line: line)
            XCTAssertLessThanOrEqual(extents.reduce(0) { $0 + $1.length }, 1 << 20, file: file, line: line)
            let one = try await connection.blockStatus(count: 1 << 20, at: 0, flags: .requestOne)
            XCTAssertEqual(one.count, 1, "REQ_ONE gives one extent", file: file, line: line)
        }
        // Many requests in flight at once, replies matched by cookie.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<64 {
                group.addTask {
                    let block = [UInt8](repeating: UInt8(index), count: 4096)
                    try await connection.write(block, at: UInt64(index) * 4096 + 262_144)
                    let read = try await connection.read(count: 4096, at: UInt64(index) * 4096 + 262_144)
                    XCTAssertEqual(read, block, "concurrent block \(index)", file: file, line: line)
                }
            }
            try await group.waitForAll()
        }
    }

    func testEveryCommandAgainstThisPackagesServer() async throws {
        let path = try startMemoryServer(try MemoryBackendProvider(size: 1 << 20))
        let connection = try await NBDConnection.connect(to: .unix(path))
        XCTAssertEqual(connection.export.size, 1 << 20)
        XCTAssertTrue(connection.export.structuredReplies)
        XCTAssertTrue(connection.export.canBlockStatus)
        XCTAssertNotNil(connection.export.blockSize)
        try await exercise(connection)
        await connection.disconnect()
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await connection.flush() }, code: .shutdown)
    }

    func testSimpleRepliesAndExportNameFallbackAgainstThisPackagesServer() async throws {
        let path = try startMemoryServer(try MemoryBackendProvider(size: 1 << 20))
        let configuration = ClientConfiguration(structuredReplies: false, useExportNameOption: true)
        let connection = try await NBDConnection.connect(to: .unix(path), configuration: configuration)
        XCTAssertFalse(connection.export.structuredReplies)
        XCTAssertNil(connection.export.blockSize, "EXPORT_NAME sends no block sizes")
        try await exercise(connection)
        await connection.disconnect()
    }

    func testLargeConcurrentWritesAndReadsArriveWhole() async throws {
        // 8 MiB requests outgrow the socket buffers, so sends and receives are partial.
        let path = try startMemoryServer(try MemoryBackendProvider(size: 64 << 20))
        let connection = try await NBDConnection.connect(to: .unix(path))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<4 {
                group.addTask {
                    let block = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &+ index &* 31) }
                    try await connection.write(block, at: UInt64(index) << 23)
                    let back = try await connection.read(count: 8 << 20, at: UInt64(index) << 23)
                    XCTAssertTrue(back == block, "block \(index) came back different")
                }
            }
            try await group.waitForAll()
        }
        await connection.disconnect()
    }

    func testARangePastTheLargestOffsetIsRefusedWithoutASend() async throws {
        let path = try startMemoryServer(try MemoryBackendProvider(size: 1 << 20))
        let connection = try await NBDConnection.connect(to: .unix(path))
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await connection.zero(count: 8192, at: UInt64.max - 4096) },
            code: .invalidArgument)
        // A request past the export reaches the server, which refuses it; the connection stays usable.
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await connection.read(count: 4096, at: 1 << 20) },
            code: .invalidArgument)
        _ = try await connection.read(count: 4096, at: 0)
        await connection.disconnect()
    }

    func testListAndInfo() async throws {
        let path = try startMemoryServer(try MemoryBackendProvider(size: 1 << 20))
        let exports = try await NBDConnection.listExports(at: .unix(path))
        XCTAssertEqual(exports.map(\.name), [""])
        let info = try await NBDConnection.exportInfo(at: .unix(path))
        XCTAssertEqual(info.size, 1 << 20)
        XCTAssertTrue(info.canBlockStatus)
    }

    func testEveryCommandAgainstNbdkit() async throws {
        let (path, _) = try await startNbdkit(["memory", "1M"])
        let connection = try await NBDConnection.connect(to: try NBDEndpoint(uri: "nbd+unix:///?socket=\(path)"))
        XCTAssertEqual(connection.export.size, 1 << 20)
        XCTAssertTrue(connection.export.structuredReplies)
        XCTAssertTrue(connection.export.canFastZero)
        try await exercise(connection)
        // nbdkit memory answers a fast zero natively.
        try await connection.zero(count: 4096, at: 0, flags: .fastZero)
        await connection.disconnect()
    }

    func testStructuredErrorMessageAndErrnoFromNbdkitErrorFilter() async throws {
        let (path, _) = try await startNbdkit(["--filter=error", "memory", "1M", "error=ENOSPC", "error-pwrite-rate=1"])
        let connection = try await NBDConnection.connect(to: .unix(path))
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await connection.write([1, 2, 3], at: 0) }, code: .noSpace)
        XCTAssertFalse(error?.message.isEmpty ?? true)
        // The connection survives a failed request.
        _ = try await connection.read(count: 512, at: 0)
        await connection.disconnect()
    }

    func testSparseReadsWithHoleChunksFromNbdkit() async throws {
        // nbdkit's data plugin with a hole-y image answers reads with OFFSET_HOLE chunks.
        let (path, _) = try await startNbdkit(["data", "data=1 @1048576 2", "size=2M"])
        let connection = try await NBDConnection.connect(to: .unix(path))
        let bytes = try await connection.read(count: 2 << 20, at: 0)
        XCTAssertEqual(bytes[0], 1)
        XCTAssertEqual(bytes[1 << 20], 2)
        XCTAssertEqual(bytes.reduce(0) { $0 + Int($1) }, 3, "everything else reads as zeroes")
        await connection.disconnect()
    }

    func testEveryCommandAgainstQemuNbd() async throws {
        let path = try await startQemuNbd(size: 1 << 20)
        let connection = try await NBDConnection.connect(to: .unix(path))
        XCTAssertEqual(connection.export.size, 1 << 20)
        try await exercise(connection)
        await connection.disconnect()
    }

    func testTheURIsExportNameIsAskedFor() async throws {
        let server = try startMemoryServer(try MemoryBackendProvider(size: 1 << 20))
        let connection = try await NBDConnection.connect(to: try NBDEndpoint(uri: "nbd+unix:///named?socket=\(server)"))
        XCTAssertEqual(connection.export.name, "named")
        await connection.disconnect()
    }
}

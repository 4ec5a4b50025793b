import Foundation
import Glibc
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

@testable import NBDBackends

final class FileBackendTests: XCTestCase {
    private var paths: [String] = []

    override func tearDown() {
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
        paths = []
        super.tearDown()
    }

    /// A new empty file of `size` bytes (a hole, where the file system supports them) in the
    /// temporary directory, removed after the test.
    private func makeFile(size: Int, contents: UInt8? = nil) throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("nbd-file-backend-\(UUID().uuidString).img").path
        paths.append(path)
        if let contents {
            try Data(repeating: contents, count: size).write(to: URL(fileURLWithPath: path))
        } else {
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
            XCTAssertEqual(truncate(path, off_t(size)), 0, String(cString: strerror(errno)))
        }
        return path
    }

    private func fileBytes(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    private func allocatedBlocks(_ path: String) -> Int {
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        return Int(info.st_blocks)
    }

    /// Whether the file system under the temporary directory reports holes: a fresh sparse file has
    /// no data, so SEEK_DATA at 0 fails with ENXIO there (and returns 0 where holes are not tracked).
    private func fileSystemReportsHoles() throws -> Bool {
        let path = try makeFile(size: 1 << 20)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        return lseek(fd, 0, LinuxFileCalls.seekData) < 0 && errno == ENXIO
    }

    /// `lseek(path, offset, whence)`, for checking what the file system recorded.
    private func seek(_ path: String, _ offset: Int, _ whence: Int32) -> Int {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        return Int(lseek(fd, off_t(offset), whence))
    }

    // MARK: - Data

    func testRoundTripOnATemporaryFile() async throws {
        let path = try makeFile(size: 1 << 20)
        let export = try FileBackendProvider(path: path)
        XCTAssertEqual(export.size, 1 << 20)
        XCTAssertFalse(export.isBlockDevice)
        let backend = try await export.open(ConnectionInfo())
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try await backend.writeBytes(data, at: 4095)

        let readBack = try await backend.readBytes(data.count, at: 4095)
        XCTAssertEqual(readBack, data)
        // The bytes really are in the file, where they were written.
        let onDisk = try fileBytes(path)
        XCTAssertEqual(onDisk.count, 1 << 20, "the file keeps its size")
        XCTAssertEqual(Array(onDisk[4095..<(4095 + data.count)]), data)
        XCTAssertEqual(onDisk[4094], 0)
    }

    func testConnectionsShareTheFile() async throws {
        let path = try makeFile(size: 65536)
        let export = try FileBackendProvider(path: path)
        let first = try await export.open(ConnectionInfo())
        let second = try await export.open(ConnectionInfo())
        try await first.writeString("one file", at: 1000)
        let seen = try await second.readString(8, at: 1000)
        XCTAssertEqual(seen, "one file")
    }

    func testReadingPastTheEndOfATruncatedFileIsAnIOError() async throws {
        let path = try makeFile(size: 65536)
        let backend = try await FileBackendProvider(path: path).open(ConnectionInfo())
        XCTAssertEqual(truncate(path, 4096), 0)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await backend.readBytes(100, at: 8192)
            }, code: .ioError)
    }

    // MARK: - Flush and FUA

    func testFlushCallsFdatasync() async throws {
        let path = try makeFile(size: 65536)
        let export = try FileBackendProvider(path: path)
        let backend = try await export.open(ConnectionInfo())
        try await backend.writeString("data", at: 0)
        XCTAssertEqual(export.store.syncCount.load(ordering: .relaxed), 0)
        try await backend.flush(flags: [])
        XCTAssertEqual(export.store.syncCount.load(ordering: .relaxed), 1)
    }

    func testFUAWriteIsWrittenWithRWFDSyncWhereSupported() async throws {
        let path = try makeFile(size: 65536)
        let export = try FileBackendProvider(path: path)
        let backend = try await export.open(ConnectionInfo())
        XCTAssertEqual(backend.capabilities.fua, .native)
        try await backend.writeString("forced unit access", at: 100, flags: [.fua])
        XCTAssertEqual(Array(try fileBytes(path)[100..<118]), Array("forced unit access".utf8))
        // With pwritev2(RWF_DSYNC) the write is durable by itself; without it, a sync must follow.
        let usedDSync = export.store.canWriteDSync.load(ordering: .relaxed)
        XCTAssertEqual(export.store.syncCount.load(ordering: .relaxed), usedDSync ? 0 : 1)
    }

    func testFUAWriteFallsBackToWriteAndFdatasync() async throws {
        let path = try makeFile(size: 65536)
        let export = try FileBackendProvider(path: path)
        export.store.canWriteDSync.store(false, ordering: .relaxed)  // as on a kernel before 4.7
        let backend = try await export.open(ConnectionInfo())
        XCTAssertEqual(backend.capabilities.fua, .native)
        try await backend.writeString("fallback", at: 4000, flags: [.fua])
        XCTAssertEqual(export.store.syncCount.load(ordering: .relaxed), 1)
        XCTAssertEqual(Array(try fileBytes(path)[4000..<4008]), Array("fallback".utf8))
    }

    // MARK: - Zero and trim

    func testZeroWithoutNoHolePunchesAHole() async throws {
        let holes = try fileSystemReportsHoles()
        let path = try makeFile(size: 4 << 20, contents: 0xCD)
        let export = try FileBackendProvider(path: path)
        let backend = try await export.open(ConnectionInfo())
        let blocksBefore = allocatedBlocks(path)

        try await backend.zero(count: 1 << 20, at: 1 << 20, flags: [])

        let bytes = try fileBytes(path)
        XCTAssertEqual(bytes.count, 4 << 20)
        XCTAssertEqual(bytes[0..<(1 << 20)].filter { $0 != 0xCD }.count, 0)
        XCTAssertEqual(bytes[(1 << 20)..<(2 << 20)].filter { $0 != 0 }.count, 0)
        XCTAssertEqual(bytes[(2 << 20)...].filter { $0 != 0xCD }.count, 0)
        if holes && export.store.canPunchHole.load(ordering: .relaxed) {
            XCTAssertEqual(seek(path, 0, LinuxFileCalls.seekHole), 1 << 20, "the zeroed range is a hole")
            XCTAssertLessThan(allocatedBlocks(path), blocksBefore)
            let extents = try await backend.extents(count: 4 << 20, at: 0, flags: [])
            XCTAssertEqual(extents, [.data(1 << 20), .hole(1 << 20), .data(2 << 20)])
        }
    }

    func testZeroWithNoHoleKeepsTheRangeAllocated() async throws {
        let path = try makeFile(size: 4 << 20, contents: 0xCD)
        let export = try FileBackendProvider(path: path)
        let backend = try await export.open(ConnectionInfo())
        let blocksBefore = allocatedBlocks(path)

        try await backend.zero(count: (1 << 20) + 100, at: (1 << 20) - 50, flags: [.noHole, .fua])

        let bytes = try fileBytes(path)
        XCTAssertEqual(bytes[0..<((1 << 20) - 50)].filter { $0 != 0xCD }.count, 0)
        XCTAssertEqual(bytes[((1 << 20) - 50)..<((2 << 20) + 50)].filter { $0 != 0 }.count, 0)
        XCTAssertEqual(bytes[((2 << 20) + 50)...].filter { $0 != 0xCD }.count, 0)
        XCTAssertGreaterThanOrEqual(allocatedBlocks(path), blocksBefore, "NO_HOLE must not deallocate")
        XCTAssertEqual(export.store.syncCount.load(ordering: .relaxed), 1, "FUA zero syncs")
    }

    func testZeroFallsBackToWritingAndFastZeroRefusesTo() async throws {
        let path = try makeFile(size: 2 << 20, contents: 0x11)
        let export = try FileBackendProvider(path: path)
        // As on a file system that supports neither FALLOC_FL_PUNCH_HOLE nor FALLOC_FL_ZERO_RANGE.
        export.store.canPunchHole.store(false, ordering: .relaxed)
        export.store.canZeroRange.store(false, ordering: .relaxed)
        let backend = try await export.open(ConnectionInfo())
        XCTAssertTrue(backend.capabilities.canFastZero)

        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await backend.zero(count: 4096, at: 8192, flags: [.fastZero])
            }, code: .notSupported)
        XCTAssertEqual(Array(try fileBytes(path)[8192..<12288]), [UInt8](repeating: 0x11, count: 4096))

        // More than one 1 MiB chunk of zeroes, ending inside the file.
        let end = (3 << 20) / 2 - 1
        try await backend.zero(count: UInt64(end - 8192), at: 8192, flags: [])
        let bytes = try fileBytes(path)
        XCTAssertEqual(bytes.count, 2 << 20)
        XCTAssertEqual(bytes[..<8192].filter { $0 != 0x11 }.count, 0)
        XCTAssertEqual(bytes[8192..<end].filter { $0 != 0 }.count, 0)
        XCTAssertEqual(bytes[end...].filter { $0 != 0x11 }.count, 0)
    }

    func testFastZeroSucceedsWhereTheFileSystemCanZeroQuickly() async throws {
        let path = try makeFile(size: 1 << 20, contents: 0x22)
        let export = try FileBackendProvider(path: path)
        let backend = try await export.open(ConnectionInfo())
        do {
            try await backend.zero(count: 65536, at: 65536, flags: [.fastZero])
        } catch {
            // Only a file system that can neither punch holes nor zero ranges may refuse.
            XCTAssertEqual(error.code, .notSupported)
            XCTAssertFalse(export.store.canPunchHole.load(ordering: .relaxed))
            XCTAssertFalse(export.store.canZeroRange.load(ordering: .relaxed))
            return
        }
        XCTAssertEqual(Array(try fileBytes(path)[65536..<131072]), [UInt8](repeating: 0, count: 65536))
    }

    func testTrimPunchesAHole() async throws {
        let holes = try fileSystemReportsHoles()
        let path = try makeFile(size: 2 << 20, contents: 0x33)
        let export = try FileBackendProvider(path: path)
        let backend = try await export.open(ConnectionInfo())
        try await backend.trim(count: 1 << 20, at: 1 << 20, flags: [])
        guard holes && export.store.canPunchHole.load(ordering: .relaxed) else { return }
        let extents = try await backend.extents(count: 2 << 20, at: 0, flags: [])
        XCTAssertEqual(extents, [.data(1 << 20), .hole(1 << 20)])
        XCTAssertEqual(Array(try fileBytes(path)[(1 << 20)...]).filter { $0 != 0 }.count, 0)
    }

    func testTrimIsIgnoredWhereHolesCannotBePunched() async throws {
        let path = try makeFile(size: 65536, contents: 0x44)
        let export = try FileBackendProvider(path: path)
        export.store.canPunchHole.store(false, ordering: .relaxed)
        let backend = try await export.open(ConnectionInfo())
        try await backend.trim(count: 4096, at: 0, flags: [.fua])
        XCTAssertEqual(export.store.syncCount.load(ordering: .relaxed), 0, "an ignored trim ignores FUA")
        XCTAssertEqual(try fileBytes(path)[0], 0x44)
    }

    // MARK: - Extents

    func testExtentsOfASparseFile() async throws {
        let path = try makeFile(size: 8 << 20)
        let backend = try await FileBackendProvider(path: path).open(ConnectionInfo())
        try await backend.writeBytes([1, 2, 3], at: (3 << 20) + 5)

        let extents = try await backend.extents(count: 8 << 20, at: 0, flags: [])
        XCTAssertEqual(extents.reduce(0) { $0 + $1.length }, 8 << 20, "extents cover the request")
        guard try fileSystemReportsHoles() else {
            XCTAssertEqual(extents, [.data(8 << 20)])
            return
        }
        // The file system allocates whole blocks; find the one that holds the write.
        let dataStart = UInt64(seek(path, 0, LinuxFileCalls.seekData))
        let dataEnd = UInt64(seek(path, Int(dataStart), LinuxFileCalls.seekHole))
        XCTAssertLessThanOrEqual(dataStart, (3 << 20) + 5)
        XCTAssertGreaterThanOrEqual(dataEnd, (3 << 20) + 8)
        XCTAssertEqual(extents, [.hole(dataStart), .data(dataEnd - dataStart), .hole((8 << 20) - dataEnd)])

        // Starting inside the data block, and asking for one extent.
        let one = try await backend.extents(count: 1 << 20, at: dataStart + 1, flags: [.requestOne])
        XCTAssertEqual(one, [.data(dataEnd - dataStart - 1)])
        // A range that is all hole, ending at the end of the file (where SEEK_DATA says ENXIO).
        let tail = try await backend.extents(count: 1 << 20, at: 7 << 20, flags: [])
        XCTAssertEqual(tail, [.hole(1 << 20)])
    }

    // MARK: - Block devices

    func testBlockDeviceSizeMatchesTheKernelsView() async throws {
        // Opens whatever block devices the machine has, read-only, and reads nothing from them.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block"))?.sorted() ?? []
        var checked = 0
        for name in names where checked < 3 {
            guard let sectors = try? String(contentsOfFile: "/sys/block/\(name)/size", encoding: .utf8),
                let count = UInt64(sectors.trimmingCharacters(in: .whitespacesAndNewlines)),
                let export = try? FileBackendProvider(path: "/dev/\(name)", readOnly: true)
            else { continue }
            XCTAssertTrue(export.isBlockDevice, name)
            // /sys/block/*/size counts 512-byte sectors whatever the device's sector size.
            XCTAssertEqual(export.size, count * 512, name)
            let backend = try await export.open(ConnectionInfo())
            XCTAssertFalse(backend.capabilities.isWritable)
            checked += 1
        }
        if checked == 0 { throw XCTSkip("no block device can be opened here") }
    }

    // MARK: - Errors and capabilities

    func testOpeningAMissingFileFailsWithAClearMessage() async throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("nbd-missing-\(UUID().uuidString).img").path
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try FileBackendProvider(path: path)
            }, code: .invalidArgument)
        XCTAssertEqual(error?.message, "cannot open \(path): No such file or directory")
    }

    func testOpeningADirectoryIsRefused() async throws {
        let directory = FileManager.default.temporaryDirectory.path
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try FileBackendProvider(path: directory, readOnly: true)
            }, code: .invalidArgument)
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try FileBackendProvider(path: directory)  // O_RDWR on a directory: EISDIR
            }, code: .invalidArgument)
        XCTAssertTrue(error?.message.hasPrefix("cannot open \(directory)") ?? false)
    }

    func testWritingToAReadOnlyFileIsNotPermitted() async throws {
        let path = try makeFile(size: 65536, contents: 0x55)
        let export = try FileBackendProvider(path: path, readOnly: true)
        XCTAssertTrue(export.isReadOnly)
        let backend = try await export.open(ConnectionInfo())
        XCTAssertFalse(backend.capabilities.isWritable)
        XCTAssertEqual(backend.capabilities.fua, FUASupport.none)

        let bytes = try await backend.readBytes(4, at: 0)
        XCTAssertEqual(bytes, [0x55, 0x55, 0x55, 0x55])
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await backend.writeBytes([1], at: 0)
            }, code: .notPermitted)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await backend.writeBytes([1], at: 0, flags: [.fua])
            }, code: .notPermitted)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await backend.zero(count: 10, at: 0, flags: [])
            }, code: .notPermitted)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await backend.trim(count: 10, at: 0, flags: [])
            }, code: .notPermitted)
        XCTAssertEqual(try fileBytes(path)[0], 0x55)
    }

    func testFileTooLargeFromTheKernelIsReportedAsNoSpace() async throws {
        // RLIMIT_FSIZE makes pwrite past the limit fail with EFBIG (with SIGXFSZ ignored), the
        // error a write past a file system's largest file gets; the NBD spec wants ENOSPC for it.
        let path = try makeFile(size: 1 << 20)
        let backend = try await FileBackendProvider(path: path).open(ConnectionInfo())
        let resource = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
        var saved = rlimit()
        XCTAssertEqual(getrlimit(resource, &saved), 0)
        let savedHandler = signal(SIGXFSZ, SIG_IGN)
        var limited = saved
        limited.rlim_cur = 65536
        XCTAssertEqual(setrlimit(resource, &limited), 0)
        defer {
            setrlimit(resource, &saved)
            signal(SIGXFSZ, savedHandler)
        }
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await backend.writeBytes([1, 2, 3], at: 1 << 19)
            }, code: .noSpace)
        XCTAssertTrue(error?.message.contains("File too large") ?? false, "\(String(describing: error))")
        // Below the limit the same backend still writes.
        try await backend.writeBytes([1, 2, 3], at: 100)
    }

    func testCapabilitiesAdvertiseMultiConnAndSlowSyncs() async throws {
        let path = try makeFile(size: 65536)
        let backend = try await FileBackendProvider(path: path).open(ConnectionInfo())
        let caps = backend.capabilities
        XCTAssertEqual(caps.size, 65536)
        XCTAssertTrue(caps.isWritable)
        XCTAssertTrue(caps.canFlush)
        XCTAssertEqual(caps.fua, .native)
        XCTAssertTrue(caps.canTrim)
        XCTAssertTrue(caps.canZero)
        XCTAssertTrue(caps.canExtents)
        XCTAssertTrue(caps.canMultiConn)
        XCTAssertEqual(caps.cache, .native)
        XCTAssertEqual(caps.slowOperations, [.flush, .fuaRequests])
        try await backend.cache(count: 65536, at: 0, flags: [])
    }
}

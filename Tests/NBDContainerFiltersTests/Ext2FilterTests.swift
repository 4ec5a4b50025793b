import Foundation
import NBDContainerFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

/// The ext2 filter over filesystem images made by the real `mkfs.ext4 -d` at test time: files found
/// by path, read, written in allocated blocks and in holes (checked by `debugfs` and `e2fsck`), and
/// bad paths and images refused.
final class Ext2FilterTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try ToolRunner.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// disk.img (with a zero stretch, which mkfs.ext4 stores as a hole), sub/small.bin, and a file
    /// made only of a hole, in an 8 MiB ext4 image.
    private func makeImage(disk: [UInt8], tool: String = "mkfs.ext4") throws -> [UInt8] {
        let content = directory.appendingPathComponent("content")
        try FileManager.default.createDirectory(
            at: content.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try Data(disk).write(to: content.appendingPathComponent("disk.img"))
        try Data([1, 2, 3, 4, 5]).write(to: content.appendingPathComponent("sub/small.bin"))
        try Data(count: 1 << 20).write(to: content.appendingPathComponent("sparse.img"))
        try Data(fragmented).write(to: content.appendingPathComponent("fragmented.img"))
        try ToolRunner.run(tool, ["-q", "-F", "-d", content.path, "fs.img", "8M"], in: directory)
        return Array(try Data(contentsOf: directory.appendingPathComponent("fs.img")))
    }

    /// 100 pieces of 8 KiB of data, each followed by 8 KiB of zeroes (holes): more extents than an
    /// inode holds, so ext4 stores them in a tree with leaf blocks.
    private let fragmented: [UInt8] = {
        var bytes: [UInt8] = []
        for index in 0..<200 {
            let value: UInt8 = index % 2 == 0 ? UInt8(index / 2 + 1) : 0
            bytes.append(contentsOf: repeatElement(value, count: 8192))
        }
        return bytes
    }()

    private func export(_ image: TestMemoryBackend, path: String) async throws -> AnyBlockBackend {
        try await Ext2Layer(path: path).wrap(AnyBlockBackend(image), for: ConnectionInfo())
    }

    private func memory(_ bytes: [UInt8]) async throws -> TestMemoryBackend {
        let backend = TestMemoryBackend(size: UInt64(bytes.count))
        try await backend.writeBytes(bytes, at: 0)
        return backend
    }

    func testFilesAreServedWithTheirSizeAndBytes() async throws {
        let disk = ToolRunner.sampleData(size: 3 << 20)
        let image = try await memory(try makeImage(disk: disk))
        let served = try await export(image, path: "/disk.img")
        XCTAssertEqual(served.capabilities.size, UInt64(disk.count))
        XCTAssertTrue(served.capabilities.isWritable)
        let bytes = try await served.readBytes(disk.count, at: 0)
        XCTAssertTrue(bytes == disk, "the served bytes differ from the file")
        var generator = SeededGenerator(seed: 11)
        for _ in 0..<100 {
            let count = Int.random(in: 1...70_000, using: &generator)
            let offset = Int.random(in: 0...(disk.count - count), using: &generator)
            let piece = try await served.readBytes(count, at: UInt64(offset))
            XCTAssertTrue(piece[...] == disk[offset..<(offset + count)], "read of \(count) at \(offset)")
        }
        await served.close()
        let small = try await export(image, path: "/sub/small.bin")
        XCTAssertEqual(small.capabilities.size, 5)
        let smallBytes = try await small.readBytes(5, at: 0)
        XCTAssertEqual(smallBytes, [1, 2, 3, 4, 5])
        await small.close()
    }

    func testExtentTreesAndBlockMappedExt2AndExt3FilesAreServed() async throws {
        let disk = ToolRunner.sampleData(size: 1 << 20, seed: 3)
        for tool in ["mkfs.ext4", "mkfs.ext3", "mkfs.ext2"] {
            let image = try await memory(try makeImage(disk: disk, tool: tool))
            for (path, expected) in [("/disk.img", disk), ("/fragmented.img", fragmented)] {
                let served = try await export(image, path: path)
                let bytes = try await served.readBytes(expected.count, at: 0)
                XCTAssertTrue(bytes == expected, "\(tool) \(path): the served bytes differ")
                await served.close()
            }
            // A write into a hole of a block-mapped file allocates through libext2fs too.
            let served = try await export(image, path: "/fragmented.img")
            try await served.writeBytes([9, 9, 9], at: 8192 + 100)
            let back = try await served.readBytes(8192 * 3, at: 0)
            var expected = Array(fragmented[0..<(8192 * 3)])
            expected.replaceSubrange((8192 + 100)..<(8192 + 103), with: [9, 9, 9])
            XCTAssertTrue(back == expected, "\(tool): the write into a hole reads back differently")
            await served.close()
            let written = try await image.readBytes(Int(image.capabilities.size), at: 0)
            try Data(written).write(to: directory.appendingPathComponent("written.img"))
            try ToolRunner.run("e2fsck", ["-f", "-n", "written.img"], in: directory)
            try ToolRunner.run("debugfs", ["-R", "dump /fragmented.img out", "written.img"], in: directory)
            var all = fragmented
            all.replaceSubrange((8192 + 100)..<(8192 + 103), with: [9, 9, 9])
            XCTAssertTrue(Array(try Data(contentsOf: directory.appendingPathComponent("out"))) == all, tool)
            try FileManager.default.removeItem(at: directory.appendingPathComponent("content"))
        }
    }

    func testWritesToAllocatedBlocksAndHolesAreReadBackByDebugfs() async throws {
        let disk = ToolRunner.sampleData(size: 3 << 20)
        let image = try await memory(try makeImage(disk: disk))
        var expected = disk
        let served = try await export(image, path: "/disk.img")
        // Across the start of the zero stretch (a hole in the image) and in the middle of data.
        for (offset, count, value) in [
            (disk.count / 3 - 5000, 20_000, UInt8(0xAB)), (100, 9000, 0xCD), (1 << 20 + 7, 1, 0xEF),
        ] {
            try await served.writeBytes(Array(repeating: value, count: count), at: UInt64(offset))
            expected.replaceSubrange(offset..<(offset + count), with: Array(repeating: value, count: count))
        }
        try await served.flush(flags: [])
        let readBack = try await served.readBytes(disk.count, at: 0)
        XCTAssertTrue(readBack == expected, "the written file reads back differently through the filter")
        await served.close()
        let sparse = try await export(image, path: "/sparse.img")
        try await sparse.writeBytes(Array(repeating: 0x5A, count: 4097), at: 8190, flags: .fua)
        await sparse.close()
        var sparseExpected = [UInt8](repeating: 0, count: 1 << 20)
        sparseExpected.replaceSubrange(8190..<(8190 + 4097), with: Array(repeating: 0x5A, count: 4097))

        let written = try await image.readBytes(Int(image.capabilities.size), at: 0)
        try Data(written).write(to: directory.appendingPathComponent("written.img"))
        try ToolRunner.run("e2fsck", ["-f", "-n", "written.img"], in: directory)
        try ToolRunner.run(
            "debugfs", ["-R", "dump /disk.img disk.out", "written.img"], in: directory)
        try ToolRunner.run(
            "debugfs", ["-R", "dump /sparse.img sparse.out", "written.img"], in: directory)
        XCTAssertTrue(Array(try Data(contentsOf: directory.appendingPathComponent("disk.out"))) == expected)
        XCTAssertTrue(Array(try Data(contentsOf: directory.appendingPathComponent("sparse.out"))) == sparseExpected)
    }

    func testZeroesReadBackAsZeroes() async throws {
        let disk = ToolRunner.sampleData(size: 1 << 20)
        let image = try await memory(try makeImage(disk: disk))
        let served = try await export(image, path: "/disk.img")
        try await served.zero(count: 70_000, at: 3, flags: [])
        let bytes = try await served.readBytes(70_010, at: 0)
        XCTAssertEqual(Array(bytes[0..<3]), Array(disk[0..<3]))
        XCTAssertEqual(Array(bytes[3..<70_003]), [UInt8](repeating: 0, count: 70_000))
        XCTAssertEqual(Array(bytes[70_003...]), Array(disk[70_003..<70_010]))
        await served.close()
    }

    func testReadOnlyConnectionsCannotWrite() async throws {
        let image = try await memory(try makeImage(disk: ToolRunner.sampleData(size: 100_000)))
        let served = try await Ext2Layer(path: "/disk.img").wrap(
            AnyBlockBackend(image), for: ConnectionInfo(isReadOnly: true))
        XCTAssertFalse(served.capabilities.isWritable)
        XCTAssertEqual(served.capabilities.size, 100_000)
        await served.close()
    }

    func testMissingFilesDirectoriesAndOtherImagesAreRefused() async throws {
        let bytes = try makeImage(disk: ToolRunner.sampleData(size: 10_000))
        let cases: [(String, [UInt8], String, String)] = [
            ("missing", bytes, "/nothere.img", "'/nothere.img' is not in the filesystem"),
            ("missing directory", bytes, "/nodir/x", "is not in the filesystem"),
            ("directory", bytes, "/sub", "'/sub' is a directory"),
            ("root", bytes, "/", "'/' is a directory"),
            ("not ext2", [UInt8](repeating: 0x41, count: 4 << 20), "/disk.img", "not an ext2, ext3 or ext4 filesystem"),
            ("short", [1, 2, 3], "/disk.img", "cannot open the image below as an ext2/3/4 filesystem"),
            ("truncated", Array(bytes.prefix(2048)), "/disk.img", "past the end of the image"),
        ]
        for (name, image, path, expected) in cases {
            let backend = try await memory(image)
            let error = await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in
                    _ = try await Ext2Layer(path: path).wrap(AnyBlockBackend(backend), for: ConnectionInfo())
                }, code: .invalidArgument, name)
            XCTAssertTrue(error?.message.contains(expected) ?? false, "\(name): \(String(describing: error))")
        }
    }

    func testTheExportNamePicksTheFileAndTheFilesystemIsShared() async throws {
        let disk = ToolRunner.sampleData(size: 50_000)
        let image = try await memory(try makeImage(disk: disk))
        let layer = try Ext2Layer(path: nil)
        let opened = LockedValue(0)
        let below: OpenBelow = { (_: ConnectionInfo) async throws(NBDError) in
            opened.withLock { $0 += 1 }
            return AnyBlockBackend(image)
        }
        let small = try await layer.open(for: ConnectionInfo(exportName: "sub/small.bin"), below: below)
        let smallBytes = try await small.readBytes(5, at: 0)
        XCTAssertEqual(smallBytes, [1, 2, 3, 4, 5])
        let big = try await layer.open(for: ConnectionInfo(exportName: "/disk.img"), below: below)
        XCTAssertEqual(big.capabilities.size, 50_000)
        let bigBytes = try await big.readBytes(50_000, at: 0)
        XCTAssertTrue(bigBytes == disk)
        XCTAssertEqual(opened.withLock { $0 }, 1, "the filesystem is opened once for every connection")
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await layer.open(for: ConnectionInfo(exportName: ""), below: below)
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("no export name") ?? false, String(describing: error))
        await small.close()
        await big.close()
        await layer.shutdown()
        XCTAssertEqual(image.closed, 1)
    }

    func testMissingLibext2fsNamesTheDebianPackage() {
        XCTAssertThrowsError(try LibExt2fs(path: "/nonexistent/libext2fs.so.2")) { error in
            XCTAssertTrue("\(error)".contains("libext2fs2"), "\(error)")
        }
    }

    func testParametersAreNbdkits() throws {
        XCTAssertEqual(try Ext2Layer(parameters: ["ext2file": "/disk.img"]).path, "/disk.img")
        XCTAssertNil(try Ext2Layer(parameters: ["ext2file": "exportname"]).path)
        XCTAssertThrowsError(try Ext2Layer(parameters: ["ext2file": "disk.img"])) { error in
            XCTAssertTrue("\(error)".contains("absolute"), "\(error)")
        }
        XCTAssertThrowsError(try Ext2Layer(parameters: [:])) { error in
            XCTAssertTrue("\(error)".contains("ext2file"), "\(error)")
        }
    }
}

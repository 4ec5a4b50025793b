import Foundation
import NBDContainerFilters
import NBDCore
import NBDTestSupport
import XCTest

/// The tar filter over archives made by the real `tar` in each of its formats: the entry found by
/// its exact name (long names included), read and written in place, and bad archives refused.
final class TarFilterTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try ToolRunner.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private let longName = "a-directory-with-a-rather-long-name/" + String(repeating: "sub/", count: 20) + "disk.img"

    /// An archive (in `format`) holding a small file, then `disk` at ``longName`` and at disk.img,
    /// then another file.
    private func archive(format: String, disk: [UInt8]) throws -> [UInt8] {
        let files: [(String, [UInt8])] = [
            ("before.txt", Array("hello\n".utf8)), (longName, disk), ("disk.img", disk), ("after.txt", [1, 2, 3]),
        ]
        for (name, bytes) in files {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: url)
        }
        try ToolRunner.run(
            "tar", ["--format=\(format)", "-cf", "archive.tar", "before.txt", longName, "disk.img", "after.txt"],
            in: directory)
        return Array(try Data(contentsOf: directory.appendingPathComponent("archive.tar")))
    }

    func testEntriesAreFoundInEveryFormatAndReadInPlace() async throws {
        let disk = ToolRunner.sampleData(size: 300_001)
        for format in ["gnu", "pax", "ustar", "oldgnu", "posix"] {
            let tar = try archive(format: format, disk: disk)
            let below = try await CompressedImageBackend.make(tar)
            for name in [longName, "disk.img"] where !(format == "ustar" && name == longName && name.utf8.count > 255) {
                let export = try await TarLayer(entry: name).wrap(below, for: ConnectionInfo())
                XCTAssertEqual(export.capabilities.size, UInt64(disk.count), "\(format) \(name)")
                let bytes = try await export.readBytes(disk.count, at: 0)
                XCTAssertTrue(bytes == disk, "\(format) \(name): the served bytes differ")
            }
        }
    }

    func testWritesLandInsideTheEntryAndTarExtractsThem() async throws {
        let disk = ToolRunner.sampleData(size: 100_000)
        let tar = try archive(format: "gnu", disk: disk)
        let below = TestMemoryBackend(size: UInt64(tar.count))
        try await below.writeBytes(tar, at: 0)
        let export = try await TarLayer(entry: "disk.img").wrap(AnyBlockBackend(below), for: ConnectionInfo())
        try await export.writeBytes(Array(repeating: 0xAB, count: 5000), at: 1000)
        var expected = disk
        expected.replaceSubrange(1000..<6000, with: Array(repeating: 0xAB, count: 5000))
        let written = try await below.readBytes(tar.count, at: 0)
        let out = directory.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data(written).write(to: out.appendingPathComponent("changed.tar"))
        try ToolRunner.run("tar", ["-xf", "changed.tar", "disk.img", "before.txt"], in: out)
        XCTAssertEqual(Array(try Data(contentsOf: out.appendingPathComponent("disk.img"))), expected)
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("before.txt"), encoding: .utf8), "hello\n")
        // A write past the entry's end is refused by the server's bounds check, which uses this size.
        XCTAssertEqual(export.capabilities.size, UInt64(disk.count))
    }

    func testMissingNamesDirectoriesLimitsAndBadArchivesAreRefused() async throws {
        let disk = ToolRunner.sampleData(size: 10_000)
        let tar = try archive(format: "gnu", disk: disk)
        var badChecksum = tar
        badChecksum[0] ^= 1
        let cases: [(String, [UInt8], TarLayer, String)] = [
            ("missing", tar, TarLayer(entry: "nothere.img"), "is not in the archive"),
            ("directory", tar, TarLayer(entry: "a-directory-with-a-rather-long-name/"), "directory"),
            ("limit", tar, TarLayer(entry: "after.txt", limit: 4096), "tar-limit=4096"),
            ("not tar", Array(repeating: 0x41, count: 2048), TarLayer(entry: "disk.img"), "not a tar archive"),
            ("short", [1, 2, 3], TarLayer(entry: "disk.img"), "not a tar archive"),
            ("checksum", badChecksum, TarLayer(entry: "disk.img"), "not a tar archive"),
            ("truncated", Array(tar.prefix(5120)), TarLayer(entry: "disk.img"), "truncated"),
        ]
        for (name, bytes, layer, expected) in cases {
            let below = try await CompressedImageBackend.make(bytes)
            let error = await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in
                    _ = try await layer.wrap(below, for: ConnectionInfo())
                }, code: .invalidArgument, name)
            XCTAssertTrue(error?.message.contains(expected) ?? false, "\(name): \(String(describing: error))")
        }
    }

    func testParametersAreNbdkits() throws {
        let layer = try TarLayer(parameters: ["tar-entry": "disk.img", "tar-limit": "10M", "tar": "gtar"])
        XCTAssertEqual(layer.entry, "disk.img")
        XCTAssertEqual(layer.limit, 10 << 20)
        XCTAssertEqual(try TarLayer(parameters: ["tar-entry": "x"]).limit, 0)
        XCTAssertThrowsError(try TarLayer(parameters: [:])) { error in
            XCTAssertTrue("\(error)".contains("tar-entry"), "\(error)")
        }
    }
}

/// An archive held by an in-memory backend.
enum CompressedImageBackend {
    static func make(_ bytes: [UInt8]) async throws -> AnyBlockBackend {
        let backend = TestMemoryBackend(size: UInt64(bytes.count))
        if !bytes.isEmpty { try await backend.writeBytes(bytes, at: 0) }
        return AnyBlockBackend(backend)
    }
}

import Foundation
import XCTest

/// Round trips through `nbd-serve` with qemu-img, nbdcopy, qemu-io and fio.
final class CopyToolInteropTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Writes `size` bytes of reproducible, non-repeating data (with a hole of zeroes in the middle).
    private func makeImage(_ name: String, size: Int) throws -> String {
        var bytes = [UInt8](repeating: 0, count: size)
        var state: UInt64 = 0x1234_5678
        for i in 0..<size where !(size / 4..<size / 2).contains(i) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes[i] = UInt8(truncatingIfNeeded: state >> 33)
        }
        let path = directory.appendingPathComponent(name).path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        return path
    }

    private func q(_ path: String) -> String { InteropEnvironment.shellQuoted(path) }

    func testQemuImgConvertRoundTrip() throws {
        try InteropEnvironment.require("qemu-img")
        let source = try makeImage("source.img", size: 8 << 20)
        let copy = directory.appendingPathComponent("copy.img").path
        let result = try InteropEnvironment.serve(
            ["--filter=multi-conn", "--filter=stats", "memory", "8M", "statsfile=/dev/null"],
            run: "qemu-img convert -n -f raw -O raw \(q(source)) \"$uri\" && qemu-img convert -f raw -O raw \"$uri\" \(q(copy)) && cmp \(q(source)) \(q(copy)) && echo same")
        assertSucceeded(result, "qemu-img round trip")
        XCTAssertTrue(result.stdout.contains("same"))
    }

    func testNbdcopyRoundTripWithFourConnections() throws {
        try InteropEnvironment.require("nbdcopy")
        let source = try makeImage("source.img", size: 16 << 20)
        let copy = directory.appendingPathComponent("copy.img").path
        let result = try InteropEnvironment.serve(
            ["--filter=multi-conn", "connection-cache", "size=16M"],
            run: "nbdcopy -C 4 --flush \(q(source)) \"$uri\" && nbdcopy -C 4 \"$uri\" \(q(copy)) && cmp \(q(source)) \(q(copy)) && echo same")
        assertSucceeded(result, "nbdcopy round trip")
        XCTAssertTrue(result.stdout.contains("same"))
    }

    func testNbdcopyThroughAFileBackend() throws {
        try InteropEnvironment.require("nbdcopy")
        let source = try makeImage("source.img", size: 4 << 20)
        let target = try makeImage("target.img", size: 4 << 20)
        XCTAssertEqual(truncate(target, 0), 0)
        XCTAssertEqual(truncate(target, 4 << 20), 0)
        let result = try InteropEnvironment.serve(
            ["--filter=multi-conn", "file", target], run: "nbdcopy --flush \(q(source)) \"$uri\"")
        assertSucceeded(result, "nbdcopy into a file")
        XCTAssertEqual(FileManager.default.contents(atPath: source), FileManager.default.contents(atPath: target))
    }

    func testQemuIoFUAAndZeroRequests() throws {
        try InteropEnvironment.require("qemu-io")
        let stats = directory.appendingPathComponent("stats.txt").path
        let commands = [
            "write -P 0x55 -f 0 64k", "write -z -f 64k 64k", "read -P 0x55 0 64k", "read -P 0 64k 64k", "flush",
        ].map { "-c \(q($0))" }.joined(separator: " ")
        let result = try InteropEnvironment.serve(
            ["--filter=stats", "memory", "1M", "statsfile=\(stats)"],
            run: "qemu-io -f raw \"$uri\" \(commands)")
        assertSucceeded(result, "qemu-io")
        XCTAssertFalse(result.stdout.contains("verification failed"), result.stdout)
        let report = try String(contentsOfFile: stats, encoding: .utf8)
        XCTAssertTrue(report.contains("\nwrite: 1 ops"), report)
        XCTAssertTrue(report.contains("\nzero: 1 ops"), report)
        XCTAssertTrue(report.contains("\nread: 2 ops"), report)
        XCTAssertTrue(report.hasPrefix("total: "), report)
    }

    func testFioVerifiesWhatItWroteThroughMultiConnAndStats() throws {
        try InteropEnvironment.require("fio")
        let image = directory.appendingPathComponent("disk.img").path
        XCTAssertTrue(FileManager.default.createFile(atPath: image, contents: nil))
        XCTAssertEqual(truncate(image, 64 << 20), 0)
        let fio = [
            "fio --name=verify --ioengine=nbd --uri=\"$uri\" --rw=randwrite --bs=4k --size=16m",
            "--iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 --numjobs=1 --verify_state_save=0",
        ].joined(separator: " ")
        let result = try InteropEnvironment.serve(
            ["--filter=multi-conn", "--filter=stats", "file", image, "statsfile=/dev/null"], run: fio)
        assertSucceeded(result, "fio verify")
        XCTAssertTrue(result.stdout.contains("verify"), result.stdout)
        XCTAssertFalse(result.stdout.contains("verify: bad"), result.stdout)
    }
}

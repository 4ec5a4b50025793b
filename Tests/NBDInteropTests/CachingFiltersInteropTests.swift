import Foundation
import XCTest

/// The cache, cow and readahead filters with real clients: nbdcopy round trips compared with cmp,
/// qemu-img over cow on a read-only file that must stay unchanged, and fio verifying through a cache.
final class CachingFiltersInteropTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        // The read-only base image must be made writable again before it can be removed.
        _ = chmod(directory.appendingPathComponent("base.img").path, 0o644)
        try? FileManager.default.removeItem(at: directory)
    }

    /// `size` bytes of reproducible, non-repeating data, with a hole of zeroes in the second quarter.
    private func makeImage(_ name: String, size: Int, seed: UInt64 = 0x1234_5678) throws -> String {
        var bytes = [UInt8](repeating: 0, count: size)
        var state = seed
        for i in 0..<size where !(size / 4..<size / 2).contains(i) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes[i] = UInt8(truncatingIfNeeded: state >> 33)
        }
        let path = directory.appendingPathComponent(name).path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        return path
    }

    private func q(_ path: String) -> String { InteropEnvironment.shellQuoted(path) }

    private func assertSame(
        _ result: InteropEnvironment.Result, _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(result.status, 0, "\(what): \(result.stdout)\n\(result.stderr)", file: file, line: line)
        XCTAssertTrue(
            result.stdout.contains("same"), "\(what): \(result.stdout)\n\(result.stderr)", file: file, line: line)
    }

    func testNbdcopyRoundTripsThroughEachFilter() throws {
        try InteropEnvironment.require("nbdcopy")
        let source = try makeImage("source.img", size: 8 << 20)
        let stacks: [[String]] = [
            ["--filter=cache"],
            ["--filter=cache", "cache=writethrough"],
            ["--filter=cache", "cache=unsafe", "cache-max-size=1M", "cache-min-block-size=4K"],
            ["--filter=cache", "cache-on-read=true", "cache-max-size=2M"],
            ["--filter=multi-conn", "--filter=cache", "multi-conn-mode=emulate"],
            ["--filter=cow"],
            ["--filter=readahead", "--filter=cache"],
            ["--filter=readahead", "--filter=cow", "cow-on-cache=true"],
        ]
        for stack in stacks {
            let copy = directory.appendingPathComponent("copy.img").path
            try? FileManager.default.removeItem(atPath: copy)
            let filters = stack.filter { $0.hasPrefix("--filter=") }
            let parameters = stack.filter { !$0.hasPrefix("--filter=") }
            let result = try InteropEnvironment.serve(
                filters + ["memory", "8M"] + parameters,
                run:
                    "nbdcopy --flush \(q(source)) \"$uri\" && nbdcopy \"$uri\" \(q(copy)) && cmp \(q(source)) \(q(copy)) && echo same"
            )
            assertSame(result, "\(stack)")
        }
    }

    /// nbdkit's layering: the stats filter between readahead and cache counts the prefetches.
    func testReadaheadSendsCacheRequestsToTheCacheBelowIt() throws {
        try InteropEnvironment.require("nbdcopy")
        let source = try makeImage("source.img", size: 8 << 20)
        let stats = directory.appendingPathComponent("stats.txt").path
        let copy = directory.appendingPathComponent("copy.img").path
        let result = try InteropEnvironment.serve(
            ["--filter=readahead", "--filter=stats", "--filter=cache", "file", source, "statsfile=\(stats)"],
            run: "nbdcopy -C 1 --request-size=65536 \"$uri\" \(q(copy)) && cmp \(q(source)) \(q(copy)) && echo same")
        assertSame(result, "nbdcopy through readahead + cache")
        let report = try String(contentsOfFile: stats, encoding: .utf8)
        XCTAssertTrue(report.contains("\ncache: "), "no cache requests reached the cache filter:\n\(report)")
    }

    func testNbdcopyWritesThroughTheCacheIntoTheFileBelow() throws {
        try InteropEnvironment.require("nbdcopy")
        let source = try makeImage("source.img", size: 4 << 20)
        let target = try makeImage("target.img", size: 4 << 20, seed: 99)
        let result = try InteropEnvironment.serve(
            ["--filter=cache", "file", target], run: "nbdcopy --flush \(q(source)) \"$uri\" && echo copied")
        XCTAssertEqual(result.status, 0, result.stderr)
        // nbdcopy's flush wrote back every dirty block before the server stopped.
        XCTAssertEqual(FileManager.default.contents(atPath: source), FileManager.default.contents(atPath: target))
    }

    func testQemuImgOverCowOnAReadOnlyFileLeavesItUnchanged() throws {
        try InteropEnvironment.require("qemu-img", "qemu-io")
        let base = try makeImage("base.img", size: 4 << 20)
        let before = try XCTUnwrap(FileManager.default.contents(atPath: base))
        XCTAssertEqual(chmod(base, 0o444), 0)
        let replacement = try makeImage("replacement.img", size: 4 << 20, seed: 7)
        let copy = directory.appendingPathComponent("copy.img").path
        // Write a whole new image over the overlay, zero a range, read everything back.
        let commands = [
            "qemu-img convert -n -f raw -O raw \(q(replacement)) \"$uri\"",
            "qemu-io -f raw -c 'write -z 0 64k' -c 'read -P 0 0 64k' \"$uri\"",
            "qemu-img convert -f raw -O raw \"$uri\" \(q(copy))",
            "cmp -i 65536 \(q(replacement)) \(q(copy)) && echo same",
            // How the server opened the base image (root may write a 0444 file, so look at the flags).
            "for f in /proc/$PPID/fd/*; do [ \"$(readlink $f)\" = \(q(base)) ] && grep '^flags' /proc/$PPID/fdinfo/${f##*/}; done; true",
        ].joined(separator: " && ")
        let result = try InteropEnvironment.serve(["--filter=cow", "file", base], run: commands)
        assertSame(result, "qemu-img over cow")
        XCTAssertFalse(result.stdout.contains("verification failed"), result.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: base), before, "cow changed the read-only file below")
        let flags = result.stdout.split(separator: "\n").first { $0.hasPrefix("flags:") }
        let accessMode = flags.flatMap { $0.split(separator: "\t").last?.last }
        XCTAssertEqual(accessMode, "0", "the base image must be opened O_RDONLY: \(flags ?? "no descriptor found")")
    }

    /// A real full disk: the cache or overlay file lives on a 2 MiB tmpfs mounted in a private mount
    /// namespace (`unshare -m`, so nothing outside the test sees it, and it goes away with the
    /// server). Not smaller: a ThreadSanitizer build of nbd-serve died of SIGBUS with a 256 KiB
    /// TMPDIR before any request (inside the sanitizer's runtime, not in the filters). Writes
    /// beyond what fits fail with ENOSPC; what was written before still reads back, other connections
    /// are served, and a flush writes the cached blocks down.
    func testAFullDiskUnderTheCacheOrOverlayGivesENOSPCAndTheServerKeepsServing() throws {
        try InteropEnvironment.require("python3-libnbd")
        guard getuid() == 0, let unshare = InteropEnvironment.path(of: "unshare") else {
            throw XCTSkip("needs root and unshare to mount a private tmpfs")
        }
        for (filter, parameter) in [("--filter=cache", "cache-min-block-size=4K"), ("--filter=cow", "cow-block-size=4K")] {
            let small = directory.appendingPathComponent("small-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
            let script = """
                import nbd, os
                h = nbd.NBD(); h.connect_uri(os.environ["uri"])
                failed = None
                for i in range(1024):
                    try:
                        h.pwrite(bytes([i % 251 + 1]) * 4096, i * 4096)
                    except nbd.Error as e:
                        failed = (i, e.errno)
                        break
                print("failed at", failed[0] if failed else None, "errno", failed[1] if failed else None)
                print("first block intact", h.pread(4096, 0) == bytes([1]) * 4096)
                h2 = nbd.NBD(); h2.connect_uri(os.environ["uri"])
                print("second connection reads", h2.pread(4096, 4096) == bytes([2]) * 4096)
                h2.flush()
                print("flushed", flush=True)
                """
            let command = try InteropEnvironment.pythonCommand(script, in: directory)
            let server = [
                "mount -t tmpfs -o size=2m none \(q(small))",
                "exec env TMPDIR=\(q(small)) \(q(try InteropEnvironment.nbdServe)) -U - \(filter) memory 4M"
                    + " \(parameter) --run \(q(command))",
            ].joined(separator: " && ")
            let result = try InteropEnvironment.run(unshare, ["-m", "sh", "-c", server])
            let output = "\(filter):\n\(result.stdout)\n\(result.stderr)"
            XCTAssertEqual(result.status, 0, output)
            let failedAt = result.stdout.split(separator: "\n").first { $0.hasPrefix("failed at") }
            XCTAssertFalse(failedAt?.contains("None") ?? true, "4 MiB fit into a 2 MiB tmpfs? \(output)")
            XCTAssertTrue(failedAt?.hasSuffix("errno ENOSPC") ?? false, "not ENOSPC: \(output)")
            XCTAssertTrue(result.stdout.contains("first block intact True"), output)
            XCTAssertTrue(result.stdout.contains("second connection reads True"), output)
            XCTAssertTrue(result.stdout.contains("flushed"), output)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: small), [], "the private mount leaked out")
        }
    }

    func testFioVerifiesThroughTheCacheWithFourConnections() throws {
        try InteropEnvironment.require("fio")
        let image = directory.appendingPathComponent("disk.img").path
        XCTAssertTrue(FileManager.default.createFile(atPath: image, contents: nil))
        XCTAssertEqual(truncate(image, 32 << 20), 0)
        let fio = [
            "fio --name=verify --ioengine=nbd --uri=\"$uri\" --rw=randwrite --bs=4k --size=8m --numjobs=4",
            "--offset_increment=8m --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0",
            "--group_reporting",
        ].joined(separator: " ")
        let result = try InteropEnvironment.serve(
            ["--filter=cache", "file", image, "cache-min-block-size=4K"], run: fio)
        XCTAssertEqual(result.status, 0, "\(result.stdout)\n\(result.stderr)")
        XCTAssertFalse(result.stdout.contains("verify: bad"), result.stdout)
    }
}

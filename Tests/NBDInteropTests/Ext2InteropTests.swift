import Foundation
import XCTest

/// The ext2 filter through the real nbd-serve, over ext4 images made by `mkfs.ext4 -d` at test time:
/// copies by nbdcopy and qemu-img compared with cmp, random reads answered as nbdkit 1.32's ext2
/// filter answers them, writes read back by `debugfs`, `e2fsck` and nbdkit's filter, the export
/// name picking the file, and bad paths and images refused with the reason.
final class Ext2InteropTests: ShellScriptTestCase {
    /// fs.img: a 32 MiB ext4 image holding disk.img (4 MiB: random data around a 1 MiB zero
    /// stretch, which mkfs.ext4 stores as a hole), sub/small.bin and sub/medium.img (200 KiB).
    ///
    /// nbdkit 1.32's ext2 filter, with this machine's libext2fs 1.47, reads zeroes instead of the
    /// data of a file's blocks past the first 512 (256 KiB or more into disk.img, while debugfs
    /// and this filter read the data): comparisons with nbdkit use medium.img, which is smaller.
    private func makeImage() throws {
        try shell(
            """
            mkdir -p content/sub
            /usr/bin/python3 -c '
            import random
            r = random.Random(9)
            data = bytearray(r.randbytes(4 << 20))
            data[1 << 20 : 2 << 20] = bytes(1 << 20)
            open("content/disk.img", "wb").write(data)
            open("content/sub/small.bin", "wb").write(b"small file\\n" * 1024)
            open("content/sub/medium.img", "wb").write(r.randbytes(200 << 10))
            '
            mkfs.ext4 -q -F -d content fs.img 32M
            """, "making fs.img")
    }

    func testCopiesAndRandomReadsEqualTheFileAndNbdkitsAnswers() throws {
        try InteropEnvironment.require("mkfs.ext4", "nbdkit", "nbdcopy", "qemu-img", "python3-libnbd")
        try makeImage()
        try shell(
            """
            $SERVE -U - --filter=ext2 file fs.img ext2file=/disk.img --run 'nbdcopy "$uri" copy.img'
            cmp content/disk.img copy.img
            $SERVE -U - -r --filter=ext2 file fs.img ext2file=/sub/small.bin --run 'qemu-img convert -f raw -O raw "$uri" small.img'
            cmp content/sub/small.bin small.img
            """, "copies through ext2")
        let check = try InteropEnvironment.pythonCommand(
            """
            import hashlib, random, sys, nbd
            h = nbd.NBD()
            h.connect_uri(sys.argv[1])
            plain = open(sys.argv[2], "rb").read()
            size = h.get_size()
            print("size", size, "plain", len(plain), "read-only", h.is_read_only())
            r = random.Random(31)
            for i in range(64):
                count = 4096 if i % 4 else r.randrange(1, min(size, 300000))
                offset = r.randrange(0, size - count)
                data = h.pread(count, offset)
                print(offset, count, hashlib.sha1(data).hexdigest()[:12], "same" if data == plain[offset:offset + count] else "DIFFERENT")
            h.shutdown()
            """, in: directory)
        for (file, size) in [("disk.img", 4 << 20), ("sub/medium.img", 200 << 10)] {
            let command = q("\(check) \"$uri\" \(q(directory.appendingPathComponent("content/\(file)").path))")
            let arguments = "-r --filter=ext2 file fs.img ext2file=/\(file)"
            let ours = try shell("$SERVE -U - \(arguments) --run \(command)", "nbd-serve \(file)")
            XCTAssertTrue(ours.stdout.hasPrefix("size \(size) plain \(size) read-only True"), ours.stdout)
            XCTAssertFalse(ours.stdout.contains("DIFFERENT"), "\(file): \(ours.stdout)")
            XCTAssertEqual(ours.stdout.split(separator: "\n").count, 65, ours.stdout)
            guard file == "sub/medium.img" else { continue }
            let theirs = try shell("nbdkit -U - \(arguments) --run \(command)", "nbdkit \(file)")
            XCTAssertEqual(ours.stdout, theirs.stdout, "nbd-serve and nbdkit answer differently")
        }
    }

    func testWritesAreReadBackByDebugfsE2fsckAndNbdkitsExt2Filter() throws {
        try InteropEnvironment.require("mkfs.ext4", "debugfs", "e2fsck", "nbdkit", "nbdcopy", "python3-libnbd")
        try makeImage()
        // Writes into stored blocks, across the start of the hole, inside it, and at the very end.
        let write = """
            /usr/bin/python3 -c "
            import sys, nbd
            h = nbd.NBD(); h.connect_uri(sys.argv[1])
            h.pwrite(bytes([0xAB]) * 70000, 5000)
            h.pwrite(bytes([0xCD]) * 9000, (1 << 20) - 4000)
            h.pwrite(bytes([0xEF]) * 4096, (3 << 19))
            h.pwrite(b\\"0123456789\\", h.get_size() - 10)
            h.flush(); h.shutdown()
            " "$uri"
            """
        let mediumWrite = """
            /usr/bin/python3 -c "
            import sys, nbd
            h = nbd.NBD(); h.connect_uri(sys.argv[1])
            h.pwrite(bytes([0x77]) * 5000, 100, nbd.CMD_FLAG_FUA); h.shutdown()
            " "$uri"
            """
        try shell(
            """
            /usr/bin/python3 -c '
            data = bytearray(open("content/disk.img", "rb").read())
            data[5000:75000] = bytes([0xAB]) * 70000
            data[(1 << 20) - 4000:(1 << 20) + 5000] = bytes([0xCD]) * 9000
            data[3 << 19:(3 << 19) + 4096] = bytes([0xEF]) * 4096
            data[len(data) - 10:] = b"0123456789"
            open("expected.img", "wb").write(data)
            medium = bytearray(open("content/sub/medium.img", "rb").read())
            medium[100:5100] = bytes([0x77]) * 5000
            open("expected-medium.img", "wb").write(medium)
            '
            $SERVE -U - --filter=ext2 file fs.img ext2file=/disk.img --run \(q(write))
            $SERVE -U - --filter=ext2 file fs.img ext2file=/sub/medium.img --run \(q(mediumWrite))
            e2fsck -f -n fs.img
            debugfs -R 'dump /disk.img dumped.img' fs.img
            cmp expected.img dumped.img
            debugfs -R 'dump /sub/small.bin small.img' fs.img
            cmp content/sub/small.bin small.img
            debugfs -R 'dump /sub/medium.img medium.img' fs.img
            cmp expected-medium.img medium.img
            nbdkit -U - -r --filter=ext2 file fs.img ext2file=/sub/medium.img --run 'nbdcopy "$uri" fromnbdkit.img'
            cmp expected-medium.img fromnbdkit.img
            echo same
            """, "writes through ext2")
    }

    func testTheExportNamePicksTheFile() throws {
        try InteropEnvironment.require("mkfs.ext4", "nbdcopy")
        try makeImage()
        try shell(
            """
            $SERVE -U - --filter=ext2 file fs.img ext2file=exportname --run '
                nbdcopy "nbd+unix:///sub/small.bin?socket=$unixsocket" small.img &&
                nbdcopy "nbd+unix:///disk.img?socket=$unixsocket" disk.img'
            cmp content/sub/small.bin small.img
            cmp content/disk.img disk.img
            """, "export names through ext2")
    }

    func testBadPathsAndImagesAreRefusedWithTheReason() throws {
        try InteropEnvironment.require("mkfs.ext4", "nbdinfo")
        try makeImage()
        let cases: [([String], String)] = [
            (["file", "fs.img", "ext2file=/nothere.img"], "'/nothere.img' is not in the filesystem"),
            (["file", "fs.img", "ext2file=/sub"], "'/sub' is a directory"),
            (["file", "content/disk.img", "ext2file=/disk.img"], "not an ext2, ext3 or ext4 filesystem"),
        ]
        for (arguments, expected) in cases {
            let result = try InteropEnvironment.shell(
                "$SERVE -U - --filter=ext2 \(arguments.map(q).joined(separator: " ")) --run 'nbdinfo \"$uri\" >/dev/null 2>&1 && echo served || echo refused'",
                in: directory)
            XCTAssertEqual(result.stdout, "refused\n", "\(arguments): \(result.stdout) \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
        }
        // A relative path is a command-line mistake: refused before anything listens.
        let relative = try InteropEnvironment.shell(
            "$SERVE -U - --filter=ext2 file fs.img ext2file=disk.img --run true", in: directory)
        XCTAssertNotEqual(relative.status, 0)
        XCTAssertTrue(relative.stderr.contains("absolute path"), relative.stderr)
    }
}

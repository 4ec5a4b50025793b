import Foundation
import XCTest

/// The xz, gzip, bzip2 and tar filters through the real nbd-serve, over files made by the real tools
/// at test time: nbdcopy and qemu-img copies compared with cmp, random reads compared with the plain
/// file, the same command lines run on nbdkit 1.32 with the same answers required, writes through
/// tar read back by `tar -x` and by nbdkit's tar filter, and bad files refused when a client connects.
final class FormatFiltersInteropTests: ShellScriptTestCase {
    /// disk.img: 3 MiB of data that compresses (short runs of random bytes, a zero stretch).
    private func makeDisk() throws {
        try shell(
            """
            /usr/bin/python3 -c '
            import random
            r = random.Random(5); out = bytearray()
            while len(out) < 3 << 20:
                out += bytes([r.randrange(256)]) * r.randrange(1, 17)
            out = out[:3 << 20]
            out[1 << 20 : (3 << 20) // 2] = bytes((3 << 20) // 2 - (1 << 20))
            open("disk.img", "wb").write(out)
            '
            """, "making disk.img")
    }

    /// A libnbd script: size, read-only flag, then 64 reads of 4 KiB (and a few odd sizes) at seeded
    /// offsets, each compared with the plain file; prints the same lines for the same export.
    private func readCheckCommand() throws -> String {
        try InteropEnvironment.pythonCommand(
            """
            import hashlib, random, sys, nbd
            h = nbd.NBD()
            h.connect_uri(sys.argv[1])
            plain = open(sys.argv[2], "rb").read()
            size = h.get_size()
            print("size", size, "plain", len(plain), "read-only", h.is_read_only())
            r = random.Random(77)
            for i in range(64):
                count = 4096 if i % 4 else r.randrange(1, 200000)
                offset = r.randrange(0, size - count)
                data = h.pread(count, offset)
                print(offset, count, hashlib.sha1(data).hexdigest()[:12], "same" if data == plain[offset:offset + count] else "DIFFERENT")
            h.shutdown()
            """, in: directory)
    }

    func testCopiesOfXzGzipBzip2AndLzipFilesEqualThePlainFile() throws {
        try InteropEnvironment.require("nbdcopy", "qemu-img", "xz", "gzip", "bzip2", "lzip")
        try makeDisk()
        try shell(
            """
            xz -T0 -k -c disk.img > threads.xz
            xz -k -c --block-size=65536 -1 disk.img > blocks.xz
            xz -k -c -T1 -0 disk.img > single.xz
            gzip -k -c disk.img > disk.gz
            bzip2 -k -c disk.img > disk.bz2
            lzip -k -c -0 disk.img > single.lz
            split -b 500000 disk.img piece. && lzip -0 piece.* && cat piece.*.lz > members.lz
            for pair in xz:threads.xz xz:blocks.xz xz:single.xz gzip:disk.gz bzip2:disk.bz2 lzip:single.lz lzip:members.lz; do
                filter=${pair%%:*}; file=${pair#*:}
                rm -f copy.img
                $SERVE -U - --filter=$filter file "$file" --run 'nbdcopy "$uri" copy.img'
                cmp disk.img copy.img
                echo "$file same"
            done
            # qemu's NBD client too (a sanitizer build of nbd-serve starts slowly: two files only).
            for pair in xz:threads.xz gzip:disk.gz; do
                filter=${pair%%:*}; file=${pair#*:}
                rm -f qcopy.img
                $SERVE -U - --filter=$filter file "$file" --run 'qemu-img convert -f raw -O raw "$uri" qcopy.img'
                cmp disk.img qcopy.img
            done
            """, "copies through xz, gzip, bzip2 and lzip")
    }

    func testRandomReadsGiveNbdkitsAnswersForXzGzipAndTar() throws {
        try InteropEnvironment.require("nbdkit", "python3-libnbd", "xz", "gzip", "tar")
        try makeDisk()
        try shell(
            """
            xz -k -c --block-size=100000 -0 disk.img > disk.img.xz
            gzip -k -c disk.img > disk.img.gz
            mkdir -p in/some/dir && cp disk.img in/some/dir/disk.img && echo hi > in/first.txt
            tar -C in -cf disk.tar first.txt some/dir/disk.img
            """, "making the files")
        let check = try readCheckCommand()
        let stacks: [[String]] = [
            ["--filter=xz", "file", "disk.img.xz"],
            ["--filter=xz", "file", "disk.img.xz", "xz-max-depth=1"],
            ["--filter=gzip", "file", "disk.img.gz"],
            ["-r", "--filter=tar", "file", "disk.tar", "tar-entry=some/dir/disk.img"],
            ["-r", "--filter=tar", "--filter=xz", "file", "disk.tar.xz", "tar-entry=some/dir/disk.img"],
        ]
        try shell("xz -k -c --block-size=262144 disk.tar > disk.tar.xz", "compressing the tar")
        let plain = directory.appendingPathComponent("disk.img").path
        for stack in stacks {
            let arguments = stack.map(q).joined(separator: " ")
            // nbdkit's --run sets $uri as a shell variable, not in the environment: pass it on.
            let command = q("\(check) \"$uri\" \(q(plain))")
            let ours = try shell("$SERVE -U - \(arguments) --run \(command)", "nbd-serve \(stack)")
            let theirs = try shell("nbdkit -U - \(arguments) --run \(command)", "nbdkit \(stack)")
            XCTAssertEqual(ours.stdout, theirs.stdout, "\(stack): nbd-serve and nbdkit answer differently")
            XCTAssertTrue(ours.stdout.hasPrefix("size \(3 << 20) plain \(3 << 20) read-only True"), ours.stdout)
            XCTAssertFalse(ours.stdout.contains("DIFFERENT"), "\(stack): \(ours.stdout)")
            XCTAssertEqual(ours.stdout.split(separator: "\n").count, 65, ours.stdout)
        }
    }

    /// nbdkit 1.32's tar filter finds an entry by the block number `tar -tR` prints, which for an
    /// entry with a GNU long name is that of the long-name header, so it serves the wrong bytes for
    /// such entries; nbdkit reads back the short-named entry only, `tar -x` both.
    func testWritesThroughTarAreReadBackByTarAndByNbdkitsTarFilter() throws {
        try InteropEnvironment.require("nbdkit", "nbdcopy", "python3-libnbd", "tar")
        try makeDisk()
        let long = "a-long-directory-name-" + String(repeating: "x", count: 90) + "/disk.img"
        let write = """
            /usr/bin/python3 -c "
            import sys, nbd
            h = nbd.NBD(); h.connect_uri(sys.argv[1])
            h.pwrite(bytes([0xAB]) * 70000, 5000)
            h.pwrite(b\\"0123456789\\", h.get_size() - 10)
            h.flush(); h.shutdown()
            " "$uri"
            """
        try shell(
            """
            mkdir -p in/\(q(String(long.dropLast(9)))) && cp disk.img in/\(q(long)) && cp disk.img in/disk.img
            echo hi > in/first.txt
            tar --format=gnu -C in -cf disk.tar first.txt \(q(long)) disk.img
            /usr/bin/python3 -c '
            data = bytearray(open("disk.img", "rb").read())
            data[5000:5000 + 70000] = bytes([0xAB]) * 70000
            data[len(data) - 10:] = b"0123456789"
            open("expected.img", "wb").write(data)
            '
            $SERVE -U - --filter=tar file disk.tar tar-entry=\(q(long)) --run \(q(write))
            $SERVE -U - --filter=tar file disk.tar tar-entry=disk.img --run \(q(write))
            mkdir out && tar -C out -xf disk.tar
            cmp expected.img out/\(q(long))
            cmp expected.img out/disk.img
            echo "hi" | cmp - out/first.txt
            nbdkit -U - -r --filter=tar file disk.tar tar-entry=disk.img --run 'nbdcopy "$uri" fromnbdkit.img'
            cmp expected.img fromnbdkit.img
            echo same
            """, "writes through tar")
    }

    func testBadFilesAreRefusedWhenAClientConnectsWithTheReason() throws {
        try InteropEnvironment.require("nbdinfo", "xz", "gzip", "lzip", "tar")
        try makeDisk()
        try shell(
            """
            xz -k -c --block-size=65536 -0 disk.img > disk.img.xz
            head -c 100000 disk.img.xz > truncated.xz
            gzip -k -c disk.img > disk.img.gz
            head -c 100000 disk.img.gz > truncated.gz
            tar -cf disk.tar disk.img
            lzip -k -c -0 disk.img > disk.img.lz
            head -c 100000 disk.img.lz > truncated.lz
            """, "making the files")
        let cases: [([String], String)] = [
            (["--filter=xz", "file", "disk.img"], "not an xz file"),
            (["--filter=xz", "file", "truncated.xz"], "truncated"),
            (["--filter=gzip", "file", "disk.img.xz"], "not a gzip file"),
            (["--filter=gzip", "file", "truncated.gz"], "truncated"),
            (["--filter=bzip2", "file", "disk.img.gz"], "not a bzip2 file"),
            (["--filter=lzip", "file", "disk.img.xz"], "not an lzip file"),
            (["--filter=lzip", "file", "truncated.lz"], "truncated or corrupt"),
            (["--filter=tar", "file", "disk.img", "tar-entry=disk.img"], "not a tar archive"),
            (["--filter=tar", "file", "disk.tar", "tar-entry=other.img"], "is not in the archive"),
        ]
        for (arguments, expected) in cases {
            let result = try InteropEnvironment.shell(
                "$SERVE -U - \(arguments.map(q).joined(separator: " ")) --run 'nbdinfo \"$uri\" >/dev/null 2>&1 && echo served || echo refused'",
                in: directory)
            XCTAssertEqual(result.stdout, "refused\n", "\(arguments): \(result.stdout) \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
        }
    }
}

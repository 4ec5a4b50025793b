import Foundation
import XCTest

/// The qcow2dec filter through the real nbd-serve, over images made by qemu-img and qemu-io at test
/// time: version 2 and 3 images with data and zero clusters, zlib- and zstd-compressed copies. The
/// served bytes equal `qemu-img convert -O raw` of the same image (through nbdcopy and through
/// qemu's own NBD client), the block status map equals qemu-nbd's for the same image, random reads
/// equal the raw copy, and images qcow2dec cannot serve are refused when a client connects, with
/// the reason. (nbdkit 1.32 has no qcow2dec filter, so qemu is the reference.)
final class QCOW2DecInteropTests: ShellScriptTestCase {
    /// raw.img: 8 MiB of data that compresses (short runs of random bytes) with a 1 MiB zero stretch.
    private let makeRaw = """
        /usr/bin/python3 -c '
        import random
        r = random.Random(3); b = bytearray()
        while len(b) < 8 << 20:
            b += bytes([r.randrange(256)]) * r.randrange(1, 40)
        b = b[:8 << 20]; b[4 << 20 : 5 << 20] = bytes(1 << 20)
        open("raw.img", "wb").write(b)
        '
        """

    func testQemuImagesServeTheirRawBytesAndQemuNbdsMap() throws {
        try InteropEnvironment.require("qemu-img", "qemu-io", "nbdcopy", "nbdinfo", "python3-libnbd")
        let check = try InteropEnvironment.pythonCommand(
            """
            import random, sys, nbd
            h = nbd.NBD()
            h.connect_uri(sys.argv[1])
            plain = open(sys.argv[2], "rb").read()
            assert h.get_size() == len(plain), (h.get_size(), len(plain))
            assert h.is_read_only()
            r = random.Random(11)
            for i in range(200):
                count = 4096 if i % 4 else r.randrange(1, 300000)
                offset = r.randrange(0, len(plain) - count)
                assert h.pread(count, offset) == plain[offset:offset + count], (offset, count)
            print("reads same")
            """, in: directory)
        let result = try shell(
            """
            \(makeRaw)
            check=\(InteropEnvironment.shellQuoted(check))
            qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 8M
            qemu-io -f qcow2 -c 'write -P 0x55 1M 64k' -c 'write -P 0x66 3000k 100k' v2.qcow2 >/dev/null
            qemu-img create -q -f qcow2 -o compat=1.1 v3.qcow2 8M
            qemu-io -f qcow2 -c 'write -P 0x55 1M 64k' -c 'write -P 0x77 2M 1M' -c 'write -z 2304k 128k' \\
                -c 'write -z 5M 64k' v3.qcow2 >/dev/null
            qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=4096 small.qcow2 8M
            qemu-io -f qcow2 -c 'write -P 0x12 4000 10000' -c 'write -z 100k 8k' small.qcow2 >/dev/null
            qemu-img convert -c -O qcow2 -f raw raw.img zlib.qcow2
            qemu-img convert -c -O qcow2 -o compression_type=zstd -f raw raw.img zstd.qcow2
            for image in v2 v3 small zlib zstd; do
                qemu-img convert -O raw $image.qcow2 $image.raw
                $SERVE -U - --filter=qcow2dec file $image.qcow2 --run 'nbdcopy "$uri" '$image.copy
                cmp $image.raw $image.copy
                nbdinfo --map -- [ qemu-nbd -r -f qcow2 $image.qcow2 ] > $image.qemu-map
                $SERVE -U - --filter=qcow2dec file $image.qcow2 --run 'nbdinfo --map "$uri"' > $image.map
                diff -u $image.qemu-map $image.map
                $SERVE -U - --filter=qcow2dec file $image.qcow2 --run "$check \\"\\$uri\\" $image.raw"
                echo "$image same"
            done
            # qemu's NBD client too.
            $SERVE -U - --filter=qcow2dec file zlib.qcow2 --run 'qemu-img convert -f raw -O raw "$uri" qemu.copy'
            cmp raw.img qemu.copy
            echo "qemu same"
            """, "serving qemu-img's images")
        XCTAssertEqual(
            result.stdout.split(separator: "\n").filter { $0.hasSuffix("same") }.count, 11, result.stdout)
    }

    func testImagesQcow2decCannotServeAreRefusedWithTheReason() throws {
        try InteropEnvironment.require("qemu-img", "nbdinfo")
        try shell(
            """
            qemu-img create -q -f qcow2 base.qcow2 1M
            qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2
            qemu-img create -q -f qcow2 good.qcow2 1M
            head -c 60 good.qcow2 > truncated.qcow2
            cp good.qcow2 badmagic.qcow2 && printf 'XXXX' | dd of=badmagic.qcow2 conv=notrunc status=none
            cp good.qcow2 dirty.qcow2 && printf '\\001' | dd of=dirty.qcow2 bs=1 seek=79 conv=notrunc status=none
            head -c 1048576 /dev/zero > disk.raw
            qemu-img create -q -f qcow2 -o data_file=data.raw external.qcow2 1M
            qemu-img create -q -f qcow2 -o extended_l2=on subclusters.qcow2 1M
            qemu-img create -q -f qcow2 --object secret,id=sec0,data=password \\
                -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 encrypted.qcow2 1M
            qemu-img create -q -f qcow2 snapshot.qcow2 1M && qemu-img snapshot -c first snapshot.qcow2
            """, "making the images")
        let cases: [(String, String)] = [
            ("overlay.qcow2", "backing file ('base.qcow2')"),
            ("truncated.qcow2", "truncated"),
            ("badmagic.qcow2", "not a qcow2 file"),
            ("disk.raw", "not a qcow2 file"),
            ("dirty.qcow2", "marked dirty"),
            ("external.qcow2", "external data file"),
            ("subclusters.qcow2", "extended L2"),
            ("encrypted.qcow2", "encrypted"),
            ("snapshot.qcow2", "internal snapshot"),
        ]
        for (image, expected) in cases {
            let result = try InteropEnvironment.shell(
                "$SERVE -U - --filter=qcow2dec file \(image) --run 'nbdinfo \"$uri\" >/dev/null 2>&1 && echo served || echo refused'",
                in: directory)
            XCTAssertEqual(result.stdout, "refused\n", "\(image): \(result.stdout) \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(expected), "\(image): \(result.stderr)")
        }
        // The good image is served, so the refusals above are the image's, not the setup's.
        let good = try InteropEnvironment.shell(
            "$SERVE -U - --filter=qcow2dec file good.qcow2 --run 'nbdinfo --size \"$uri\"'", in: directory)
        XCTAssertEqual(good.stdout, "1048576\n", good.stderr)
    }
}

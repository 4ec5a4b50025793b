import Foundation
import XCTest

/// The luks filter through the real nbd-serve, over images made at test time by qemu-img and
/// cryptsetup: what it serves equals what qemu-img's LUKS driver decrypts, what it writes is read
/// back by qemu-img and by nbdkit 1.32's luks filter, and bad images are refused when a client
/// connects, with a message that says why.
final class LUKSInteropTests: ShellScriptTestCase {
    /// cryptsetup lives in /usr/sbin (Debian's cryptsetup-bin); InteropEnvironment's list does not
    /// name it, so this skips (or fails under NBD_INTEROP=required) with the package itself.
    private func requireCryptsetup() throws {
        guard InteropEnvironment.path(of: "cryptsetup") == nil else { return }
        let message = "cryptsetup is not installed (Debian package cryptsetup-bin); run .ci/run or apt-get install it"
        if InteropEnvironment.isRequired { XCTFail("NBD_INTEROP=required but \(message)") }
        throw XCTSkip(message)
    }

    /// The shell lines that write the passphrase file `pw` and `plain.raw` (`megabytes` MiB of random
    /// data), and the qemu-img options that open `$1` with its LUKS driver.
    private func prologue(megabytes: Int) -> String {
        """
        printf 'sesame' > pw
        head -c \(megabytes)M /dev/urandom > plain.raw
        qopts() { echo "--object secret,id=sec0,data=sesame --image-opts driver=luks,key-secret=sec0,file.filename=$1"; }

        """
    }

    func testAQemuImgImageServesWhatQemuImgDecrypts() throws {
        try InteropEnvironment.require("qemu-img", "nbdcopy")
        try shell(
            prologue(megabytes: 4) + """
                # iter-time=10: key slots that take milliseconds, not seconds, to open. qemu-img
                # calibrates PBKDF2 by the thread's CPU time, which on a busy machine can read 0 for
                # a round and fail ("Unable to get accurate CPU usage"): a few attempts.
                for attempt in 1 2 3 4 5; do
                    if qemu-img convert -q -f raw -O luks --object secret,id=sec0,data=sesame \
                        -o key-secret=sec0,iter-time=10 plain.raw disk.luks 2> qemu.err; then break; fi
                    grep -q 'accurate CPU usage' qemu.err || { cat qemu.err >&2; exit 1; }
                    rm -f disk.luks
                done
                test -f disk.luks || { cat qemu.err >&2; exit 1; }
                qemu-img convert $(qopts disk.luks) -O raw reference.raw
                cmp reference.raw plain.raw
                "$SERVE" -U - --filter=luks file disk.luks passphrase=+pw --run 'nbdcopy "$uri" served.raw'
                cmp served.raw reference.raw
                """, "serving a qemu-img LUKS image")
    }

    func testWritesThroughNbdServeAreReadByQemuImgAndNbdkit() throws {
        try InteropEnvironment.require("qemu-img", "nbdcopy", "nbdkit", "python3-libnbd")
        try requireCryptsetup()
        let check = try InteropEnvironment.pythonCommand(
            """
            import sys, nbd
            h = nbd.NBD()
            h.connect_uri(sys.argv[1])
            # The export advertises 512-byte blocks as a hint; libnbd would otherwise refuse to send
            # the unaligned writes itself.
            h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
            # Writes that cover whole sectors and writes that do not (read-modify-write).
            for offset, fill, count in [(0, 0x11, 65536), (70000, 0x22, 1), (131071, 0x33, 9000), (1 << 20, 0x44, 512)]:
                h.pwrite(bytes([fill]) * count, offset)
            h.zero(4096, 200000)
            h.flush()
            h.shutdown()
            """, in: directory)
        try shell(
            prologue(megabytes: 3) + """
                truncate -s 5M disk.img
                cryptsetup luksFormat --type luks1 -q --key-file pw --pbkdf-force-iterations 1000 disk.img
                "$SERVE" -U - --filter=luks file disk.img passphrase=+pw --run 'nbdcopy plain.raw "$uri"'
                "$SERVE" -U - --filter=luks file disk.img passphrase=+pw --run "\(check) \\"\\$uri\\""
                /usr/bin/python3 -c '
                data = bytearray(open("plain.raw", "rb").read())
                for offset, fill, count in [(0, 0x11, 65536), (70000, 0x22, 1), (131071, 0x33, 9000), (1 << 20, 0x44, 512)]:
                    data[offset:offset + count] = bytes([fill]) * count
                data[200000:204096] = bytes(4096)
                open("expected.raw", "wb").write(data)
                '
                qemu-img convert $(qopts disk.img) -O raw qemu.raw
                cmp -n 3145728 qemu.raw expected.raw
                nbdkit -U - --filter=luks file disk.img passphrase=+pw --run 'nbdcopy "$uri" nbdkit.raw'
                cmp -n 3145728 nbdkit.raw expected.raw
                cmp qemu.raw nbdkit.raw
                """, "writing through nbd-serve, reading with qemu-img and nbdkit")
    }

    func testBadImagesAreRefusedWithAMessageThatSaysWhy() throws {
        try InteropEnvironment.require("nbdinfo")
        try requireCryptsetup()
        try shell(
            prologue(megabytes: 1) + """
                truncate -s 3M good.img
                cryptsetup luksFormat --type luks1 -q --key-file pw --pbkdf-force-iterations 1000 good.img
                head -c 300 good.img > truncated.img
                cp good.img corrupt.img
                # Key slot 0's stripe count (offset 252) set to 0.
                printf '\\000\\000\\000\\000' | dd of=corrupt.img bs=1 seek=252 conv=notrunc status=none
                printf 'wrong' > wrong
                try() {
                    if "$SERVE" -U - --filter=luks file "$1" passphrase=+"$2" --run 'nbdinfo "$uri"' > out.txt 2> err.txt; then
                        echo "$1 was served" >&2; exit 1
                    fi
                    grep -F "$3" err.txt > /dev/null || { echo "$1: no '$3' in:" >&2; cat err.txt >&2; exit 1; }
                }
                try good.img wrong "luks: the passphrase is wrong: it opens none of the image's 1 active key slot"
                try truncated.img pw "luks: the image is truncated: it is 300 bytes, shorter than a LUKSv1 header (592 bytes)"
                try corrupt.img pw "luks: the header is corrupt: key slot 0 has 0 stripes"
                try plain.raw pw "luks: not a LUKS image: it does not start with the LUKS magic bytes"
                "$SERVE" -U - --filter=luks file good.img passphrase=+pw --run 'nbdinfo --size "$uri"' > size.txt
                test "$(cat size.txt)" = 1048576
                """, "refusing bad images")
    }
}

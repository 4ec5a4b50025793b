import Foundation
import NBDTestSupport
import XCTest

/// `nbd-serve rbd ...` against a real single-node Ceph cluster (``CephTestCluster``), driven by
/// nbdcopy, qemu-img, python libnbd and fio; what nbd-serve wrote is checked with `rbd export`
/// (librbd, not the code under test) and what `rbd import` wrote is read through nbd-serve.
final class CephInteropTests: XCTestCase {
    private var directory: URL!
    private var cluster: CephTestCluster!

    override func setUpWithError() throws {
        cluster = try CephTestCluster.shared()
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func q(_ text: String) -> String { InteropEnvironment.shellQuoted(text) }

    /// Runs `script` with /bin/sh in the test directory; `$SERVE` is nbd-serve, `$CONF` the
    /// cluster's ceph.conf, `$RBD` the rbd tool on that cluster.
    private func shell(_ script: String) throws -> InteropEnvironment.Result {
        try InteropEnvironment.shell(
            script, in: directory, exports: ["CONF": q(cluster.confPath), "RBD": "\"rbd -c $CONF --no-progress\""])
    }

    /// Writes `size` random bytes with a zero hole in the second quarter.
    private func makeFile(_ name: String, size: Int) throws -> String {
        let random = try XCTUnwrap(FileHandle(forReadingAtPath: "/dev/urandom"))
        defer { try? random.close() }
        var data = random.readData(ofLength: size)
        XCTAssertEqual(data.count, size)
        data.resetBytes(in: size / 4..<size / 2)
        let path = directory.appendingPathComponent(name).path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: data))
        return path
    }

    func testNbdcopyIntoTheImageIsWhatLibrbdExportsAndQemuImgReadsWhatLibrbdImported() throws {
        try InteropEnvironment.require("nbdcopy", "qemu-img")
        _ = try makeFile("source.img", size: 16 << 20)
        let written = try cluster.createImage(size: 16 << 20)
        let imported = "imported-\(UUID().uuidString.prefix(8).lowercased())"
        let result = try shell(
            """
            # Four connections: the default shared handle advertises multi-conn.
            $SERVE -U - rbd \(written) conf="$CONF" --run 'nbdcopy -C 4 source.img "$uri"'
            $RBD export rbd/\(written) exported.img
            cmp source.img exported.img
            $RBD import source.img rbd/\(imported)
            $SERVE -U - -r rbd rbd/\(imported) conf="$CONF" --run 'qemu-img convert -f raw -O raw "$uri" converted.img'
            cmp source.img converted.img
            # rbd import left the zero quarter unallocated: object 1 (4-8 MiB) is a hole on the map.
            $SERVE -U - -r rbd rbd/\(imported) conf="$CONF" --run 'nbdinfo --map "$uri"' | tr -s ' ' | sed 's/^ //' >map.txt
            grep -qx '4194304 4194304 3 hole,zero' map.txt || { cat map.txt; exit 1; }
            # And per-connection handles, one connection (no multi-conn there).
            $SERVE -U - rbd \(imported) conf="$CONF" handles=per-connection --run 'nbdcopy "$uri" copied.img'
            cmp source.img copied.img
            echo OK
            """)
        assertSucceeded(result, "the round trips")
        XCTAssertEqual(result.stdout.split(separator: "\n").last, "OK")
    }

    func testTrimZeroAndFUAWritesReachTheImage() throws {
        try InteropEnvironment.require("python3-libnbd")
        _ = try makeFile("source.img", size: 12 << 20)
        let image = "tz-\(UUID().uuidString.prefix(8).lowercased())"
        try cluster.rbd(["import", directory.appendingPathComponent("source.img").path, "rbd/\(image)"])
        let script = """
            import nbd, os
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            print(h.can_trim(), h.can_zero(), h.can_fua(), h.can_flush())
            h.zero(4 << 20, 8 << 20)
            h.zero(100, 1000, nbd.CMD_FLAG_NO_HOLE)
            h.trim(4 << 20, 0, nbd.CMD_FLAG_FUA)
            h.pwrite(b"acknowledged", 5 << 20, nbd.CMD_FLAG_FUA)
            h.shutdown()
            """
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let result = try shell(
            """
            $SERVE -U - rbd \(image) conf="$CONF" handles=per-connection --run \(q(command))
            $RBD export rbd/\(image) exported.img
            """)
        assertSucceeded(result, "trim and zero")
        XCTAssertEqual(result.stdout.split(separator: "\n").first, "True True True True")
        let source = try [UInt8](Data(contentsOf: directory.appendingPathComponent("source.img")))
        let stored = try [UInt8](Data(contentsOf: directory.appendingPathComponent("exported.img")))
        XCTAssertEqual(stored.count, 12 << 20)
        XCTAssertTrue(stored[0..<(4 << 20)].allSatisfy { $0 == 0 }, "trimmed object")
        XCTAssertTrue(stored[(8 << 20)...].allSatisfy { $0 == 0 }, "zeroed object")
        XCTAssertTrue(stored[(5 << 20)..<((5 << 20) + 12)].elementsEqual("acknowledged".utf8))
        var expectedMiddle = source[(4 << 20)..<(8 << 20)]
        expectedMiddle.replaceSubrange((5 << 20)..<((5 << 20) + 12), with: Array("acknowledged".utf8))
        XCTAssertTrue(stored[(4 << 20)..<(8 << 20)] == expectedMiddle, "untouched data changed")
    }

    func testASnapshotIsServedReadOnlyAndWritesAreRefusedWithEPERM() throws {
        try InteropEnvironment.require("python3-libnbd", "nbdinfo")
        _ = try makeFile("source.img", size: 4 << 20)
        let image = "snap-\(UUID().uuidString.prefix(8).lowercased())"
        let script = """
            import nbd, os, errno
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            print(h.is_read_only())
            try:
                h.pwrite(b"x" * 512, 0)
                print("written")
            except nbd.Error as e:
                print(errno.errorcode.get(e.errnum, e.errnum))
            print(bytes(h.pread(16, 0)) == open("source.img", "rb").read(16))
            """
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let result = try shell(
            """
            $RBD import source.img rbd/\(image)
            $RBD snap create rbd/\(image)@s1
            # Changed after the snapshot: the snapshot must still show the source.
            $SERVE -U - rbd \(image) conf="$CONF" --run 'nbdcopy /dev/zero --destination-is-zero=false "$uri" 2>/dev/null || qemu-io -f raw -c "write -P 7 0 64k" "$uri" >/dev/null'
            $SERVE -U - rbd \(image)@s1 conf="$CONF" --run \(q(command))
            """)
        assertSucceeded(result, "the snapshot")
        XCTAssertEqual(result.stdout.split(separator: "\n").suffix(3), ["True", "EPERM", "True"])
    }

    /// Per-connection handles with librbd's writeback cache: a write acknowledged on connection A
    /// sits in A's cache; a flush on connection B does not reach it, so B reads the old data, and
    /// the handles rightly do not advertise multi-conn. `--filter=multi-conn` fans B's flush out to
    /// A, after which B reads A's write, as `CAN_MULTI_CONN` promises.
    ///
    /// Deterministic: the test's ceph.conf makes librbd keep dirty data until a flush (writeback
    /// policy, no write-through before the first flush, a 10-minute dirty age, far more cache than
    /// the write), and B never read the range before (its cache holds nothing stale). The image has
    /// no exclusive-lock feature: with it, librbd here made A's write visible to B at once, by a
    /// route this test must not depend on.
    func testMultiConnOverPerConnectionCachedHandlesIsMadeSafeByTheFilter() throws {
        try InteropEnvironment.require("python3-libnbd")
        let conf = directory.appendingPathComponent("writeback.conf")
        try
            (try String(contentsOfFile: cluster.confPath, encoding: .utf8)
                + """

                [client]
                rbd cache policy = writeback
                rbd cache writethrough until flush = false
                rbd cache max dirty age = 600

                """).write(to: conf, atomically: true, encoding: .utf8)
        let image = try cluster.createImage(size: 8 << 20, features: ["layering"])
        let script = """
            import nbd, os
            a, b = nbd.NBD(), nbd.NBD()
            a.connect_uri(os.environ["uri"])
            b.connect_uri(os.environ["uri"])
            print(a.can_multi_conn())
            a.pwrite(b"written on A", 4 << 20)
            b.flush()
            print(bytes(b.pread(12, 4 << 20)))
            """
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let serve = "$SERVE -U - rbd \(image) conf=\(q(conf.path)) handles=per-connection cache=true"
        let withoutFilter = try shell("\(serve) --run \(q(command))")
        assertSucceeded(withoutFilter, "two connections without the filter")
        XCTAssertEqual(
            withoutFilter.stdout.split(separator: "\n"),
            ["False", "b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'"],
            "without the filter B's flush cannot reach A's cache (if B sees the write, the test's cache settings no longer hold it back)"
        )
        let withFilter = try shell("\(serve) --filter=multi-conn --run \(q(command))")
        assertSucceeded(withFilter, "two connections with --filter=multi-conn")
        XCTAssertEqual(withFilter.stdout.split(separator: "\n"), ["True", "b'written on A'"])
    }

    func testFioWithVerifyOverFourConnections() throws {
        try InteropEnvironment.require("fio")
        let image = try cluster.createImage(size: 32 << 20)
        let result = try shell(
            """
            $SERVE -U - rbd \(image) conf="$CONF" --run 'fio --name=verify --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --size=32M --io_size=8M --iodepth=16 --numjobs=4 --offset_increment=8M --size=8M --verify=crc32c --verify_fatal=1 --group_reporting --output-format=terse >/dev/null'
            echo OK
            """)
        assertSucceeded(result, "fio with verify")
    }

    /// fio over 4 connections with flushes (every 16 writes and at the end) and crc32c verify, on
    /// per-connection handles with librbd's cache (each connection its own cache) made multi-conn
    /// by the filter, which fans every flush out to the connections that wrote: the data that four
    /// caches wrote back is what fio wrote. No exclusive lock on the image, so the four handles
    /// write at once instead of taking turns (each lock hand-over would flush the owner's cache).
    func testFioWithFlushesAndVerifyOverFourPerConnectionCachedHandlesBehindMultiConn() throws {
        try InteropEnvironment.require("fio", "nbdinfo")
        let image = try cluster.createImage(size: 16 << 20, features: ["layering"])
        let result = try shell(
            """
            $SERVE -U - --filter=multi-conn rbd \(image) conf="$CONF" handles=per-connection cache=true --run 'nbdinfo --can multi-conn "$uri" && fio --name=verify --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 --numjobs=4 --offset_increment=4M --size=4M --fsync=16 --end_fsync=1 --verify=crc32c --verify_fatal=1 --group_reporting --output-format=terse >/dev/null'
            echo OK
            """)
        assertSucceeded(result, "fio with flushes and verify over per-connection cached handles")
        XCTAssertEqual(result.stdout.split(separator: "\n").last, "OK")
    }

    func testAMissingImageStopsNbdServeWithAMessageNamingIt() throws {
        let result = try shell("$SERVE -U - rbd rbd/no-such-image conf=\"$CONF\" --run true || echo \"exit $?\"")
        XCTAssertTrue(result.stdout.contains("exit"), result.stdout + result.stderr)
        XCTAssertTrue(result.stderr.contains("image 'no-such-image' not found in pool 'rbd'"), result.stderr)
    }
}

import Foundation
import NBDTestSupport
import XCTest

/// `nbd-serve rbd` while the cluster's only OSD is killed (SIGKILL) and started again, on a cluster
/// of this test's own whose OSD keeps its objects in a file (bluestore): a memstore OSD comes back
/// empty. Python libnbd drives the clients and runs `Scripts/ceph-test-cluster.sh kill-osd` and
/// `start-osd` itself, so the OSD goes away while requests are in flight.
///
/// "The server keeps serving other clients": with one OSD every object of every image lives on it,
/// so no request of any client can succeed while it is down. What the test shows instead is that
/// nothing in the server waits on it: while a client's requests wait for the dead OSD, a new client
/// completes the handshake (`NBD_OPT_GO` with the export's size and flags), and every client's
/// requests fail on their own with `EIO` within `timeout=`; when the OSD is back the same
/// connections (and the same server process) are answered with the data acknowledged before.
final class CephOSDRestartInteropTests: XCTestCase {
    private func q(_ text: String) -> String { InteropEnvironment.shellQuoted(text) }

    func testRequestsFailWithEIOWhileTheOSDIsDownNothingAcknowledgedIsLostAndRetryRecoversAReader() throws {
        try InteropEnvironment.require("python3-libnbd")
        let cluster = try CephTestCluster.startPrivate(objectstore: "bluestore")
        defer { cluster.stop() }
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let flushed = randomBytes(1 << 20)
        let fua = randomBytes(64 << 10)
        try Data(flushed).write(to: directory.appendingPathComponent("flushed.bin"))
        try Data(fua).write(to: directory.appendingPathComponent("fua.bin"))
        let image = try cluster.createImage(size: 16 << 20)
        let environment = """
            set -e
            export SERVE=\(q(try InteropEnvironment.nbdServe))
            export CONF=\(q(cluster.confPath))
            export CLUSTER_SCRIPT=\(q(CephTestCluster.scriptPath))
            export CLUSTER_DIR=\(q(cluster.directory))
            cd \(q(directory.path))

            """

        // (a) and (c): requests in flight when the OSD dies fail with EIO; a new client is still
        // answered; what was flushed or written with FUA before is there after the restart.
        let faults = try InteropEnvironment.pythonCommand(Self.prologue + Self.faultScript, in: directory)
        let faultRun = try shellScript(
            environment + "$SERVE -U - rbd \(image) conf=\"$CONF\" timeout=3 --run \(q(faults))\n", in: directory)
        assertSucceeded(faultRun, "requests across an OSD restart")
        XCTAssertEqual(
            faultRun.stdout.split(separator: "\n"),
            [
                "new client while the OSD is down: size 16777216",
                "A read: EIO", "A FUA write: EIO", "B read: EIO", "C read: EIO",
                "after the restart, B reads A's flushed write: True", "A reads B's FUA write: True",
                "C reads: True",
            ])
        // Read by librbd directly, not through the code under test.
        let exported = try cluster.exportImage(image)
        XCTAssertTrue(exported[0..<(1 << 20)].elementsEqual(flushed), "flushed data lost across the OSD restart")
        XCTAssertTrue(exported[(8 << 20)..<((8 << 20) + (64 << 10))].elementsEqual(fua), "FUA data lost")

        // (b): a reader started while the OSD is down completes through --filter=retry once it is
        // back. The log filter below retry shows the failed attempt, so the OSD is started only
        // after the reader has seen the fault (no timing assumed).
        let reader = try InteropEnvironment.pythonCommand(Self.prologue + Self.retryScript, in: directory)
        let retryRun = try shellScript(
            environment
                + "$SERVE -U - -r --filter=retry --filter=log rbd \(image) conf=\"$CONF\" timeout=3 retries=1000 retry-delay=1s retry-exponential=no logfile=attempts.log --run \(q(reader))\n",
            in: directory)
        assertSucceeded(retryRun, "a reader through --filter=retry across an OSD restart")
        XCTAssertEqual(retryRun.stdout.split(separator: "\n"), ["retried read is the flushed data: True"])
    }

    private func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    private func shellScript(_ script: String, in directory: URL) throws -> InteropEnvironment.Result {
        let file = directory.appendingPathComponent("test.sh")
        try script.write(to: file, atomically: true, encoding: .utf8)
        return try InteropEnvironment.run("/bin/sh", [file.path])
    }

    /// Helpers of both scripts: the cluster script, and bounded waits for a request's outcome.
    private static let prologue = """
        import errno, nbd, os, subprocess, sys, time

        def cluster(command):
            subprocess.run([os.environ["CLUSTER_SCRIPT"], command, os.environ["CLUSTER_DIR"]],
                           check=True, timeout=120, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

        def outcome(h, cookie, limit=60):
            # "ok" or the errno name; a request that has no answer within the bound fails the test.
            deadline = time.monotonic() + limit
            try:
                while not h.aio_command_completed(cookie):
                    if time.monotonic() > deadline:
                        raise SystemExit("no answer within %d s" % limit)
                    h.poll(1000)
                return "ok"
            except nbd.Error as e:
                return errno.errorcode.get(e.errnum, str(e.errnum))

        flushed = open("flushed.bin", "rb").read()
        fua = open("fua.bin", "rb").read()

        """

    private static let faultScript = """
        uri = os.environ["uri"]
        a, b = nbd.NBD(), nbd.NBD()
        a.connect_uri(uri)
        b.connect_uri(uri)
        a.pwrite(flushed, 0)
        a.flush()
        b.pwrite(fua, 8 << 20, nbd.CMD_FLAG_FUA)

        cluster("kill-osd")
        read = a.aio_pread(nbd.Buffer(4096), 0)
        write = a.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b"y" * 4096)), 12 << 20, flags=nbd.CMD_FLAG_FUA)
        c = nbd.NBD()
        c.connect_uri(uri)
        print("new client while the OSD is down: size", c.get_size())
        print("(A's read was %s when C was answered)" % ("done" if a.aio_command_completed(read) else "in flight"),
              file=sys.stderr)
        b_read = b.aio_pread(nbd.Buffer(4096), 8 << 20)
        c_read = c.aio_pread(nbd.Buffer(4096), 0)
        print("A read:", outcome(a, read))
        print("A FUA write:", outcome(a, write))
        print("B read:", outcome(b, b_read))
        print("C read:", outcome(c, c_read))

        cluster("start-osd")
        print("after the restart, B reads A's flushed write:", bytes(b.pread(len(flushed), 0)) == flushed)
        print("A reads B's FUA write:", bytes(a.pread(len(fua), 8 << 20)) == fua)
        print("C reads:", bytes(c.pread(len(fua), 8 << 20)) == fua)
        for h in (a, b, c):
            h.shutdown()
        """

    private static let retryScript = """
        h = nbd.NBD()
        h.connect_uri(os.environ["uri"])
        cluster("kill-osd")
        buffer = nbd.Buffer(len(flushed))
        cookie = h.aio_pread(buffer, 0)
        deadline = time.monotonic() + 60
        while "error=EIO" not in open("attempts.log").read():
            if time.monotonic() > deadline:
                raise SystemExit("no failed attempt was logged within 60 s")
            h.poll(100)
        cluster("start-osd")
        if outcome(h, cookie, limit=120) != "ok":
            raise SystemExit("the retried read failed")
        print("retried read is the flushed data:", bytes(buffer.to_bytearray()) == flushed)
        h.shutdown()
        """
}

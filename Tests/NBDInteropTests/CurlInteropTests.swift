import Foundation
import NBDTestSupport
import XCTest

/// The `curl` backend through the real nbd-serve, in front of a real nginx (``TestNginx``), read by
/// qemu-img, nbdcopy, nbdinfo and python libnbd: KubeVirt CDI's importer command line unchanged,
/// HTTPS, authentication, refusals at start, and the web server going away while the retry filter
/// reads.
final class CurlInteropTests: XCTestCase {
    private var nginx: TestNginx!
    private var directory: URL!
    /// The image as a file, for cmp and for the scripts to compare with.
    private var expected: String { directory.appendingPathComponent("expected.img").path }

    override func setUp() async throws {
        let nginx = try TestNginx.start(https: name.contains("HTTPS"))
        self.nginx = nginx
        let directory = try InteropEnvironment.temporaryDirectory()
        self.directory = directory
        addTeardownBlock {
            nginx.remove()
            try? FileManager.default.removeItem(at: directory)
        }
        try Data(nginx.image).write(to: URL(fileURLWithPath: expected))
    }

    private func shell(_ script: String) throws -> InteropEnvironment.Result {
        try InteropEnvironment.run("/bin/sh", ["-c", script])
    }

    func testKubeVirtCDICommandLineUnchangedThenQemuImgConvert() throws {
        try InteropEnvironment.require("qemu-img")
        let nbdServe = try InteropEnvironment.nbdServe
        let socket = directory.appendingPathComponent("nbd.sock").path
        let pidFile = directory.appendingPathComponent("nbd.pid").path
        let output = directory.appendingPathComponent("disk.raw").path
        let q = InteropEnvironment.shellQuoted
        // CDI's importer (pkg/image/nbdkit.go) with nbdkit replaced by nbd-serve, then its qemu-img
        // convert. The pid file appears once nbd-serve listens; waiting for it is bounded.
        let result = try shell(
            """
            set -e
            \(q(nbdServe)) --foreground --readonly --exit-with-parent -U \(q(socket)) --pidfile \(q(pidFile)) \
                --filter=readahead --filter=retry curl url=\(q(nginx.url())) retry-exponential=no &
            for i in $(seq 3000); do [ -s \(q(pidFile)) ] && break; sleep 0.01; done
            [ -s \(q(pidFile)) ] || { echo "nbd-serve wrote no pid file"; exit 1; }
            qemu-img convert -p -O raw 'nbd+unix:///?socket=\(socket)' \(q(output))
            kill "$(cat \(q(pidFile)))"
            wait
            cmp \(q(output)) \(q(expected))
            echo identical
            """)
        assertSucceeded(result, "the CDI command line and qemu-img convert")
        XCTAssertTrue(result.stdout.contains("identical"), result.stdout)
    }

    func testNbdcopyAndRandomReadsMatchTheImage() throws {
        try InteropEnvironment.require("nbdcopy", "python3-libnbd")
        let copy = directory.appendingPathComponent("copy.img").path
        let script = try InteropEnvironment.pythonCommand(
            """
            import nbd, os, random
            expected = open(\(pythonString(expected)), "rb").read()
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            assert h.get_size() == len(expected), h.get_size()
            assert h.is_read_only()
            generator = random.Random(19)
            for _ in range(200):
                offset = generator.randrange(0, len(expected) - 4096)
                assert h.pread(4096, offset) == expected[offset:offset + 4096], offset
            print("random reads ok")
            """, in: directory)
        let result = try InteropEnvironment.serve(
            ["-r", "curl", nginx.url()],
            run:
                "nbdcopy \"$uri\" \(InteropEnvironment.shellQuoted(copy)) && cmp \(InteropEnvironment.shellQuoted(copy)) \(InteropEnvironment.shellQuoted(expected)) && \(script)"
        )
        assertSucceeded(result, "nbdcopy and random reads")
        XCTAssertTrue(result.stdout.contains("random reads ok"), result.stdout)
    }

    /// virt-v2v's curl input: retry and cow above curl. Writes stay in the overlay (nothing is
    /// PUT to the web server) and reads elsewhere come from the image.
    func testVirtV2VStackWritesIntoTheOverlayAndReadsTheImage() throws {
        try InteropEnvironment.require("python3-libnbd")
        let script = try InteropEnvironment.pythonCommand(
            """
            import nbd, os
            expected = open(\(pythonString(expected)), "rb").read()
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            h.pwrite(b"v2v" * 4096, 65536)
            assert h.pread(3 * 4096, 65536) == b"v2v" * 4096
            assert h.pread(65536, 0) == expected[:65536]
            assert h.pread(4096, 1 << 20) == expected[(1 << 20):(1 << 20) + 4096]
            print("overlay ok")
            """, in: directory)
        let result = try InteropEnvironment.serve(
            ["--filter=retry", "--filter=cow", "curl", nginx.url()], run: script)
        assertSucceeded(result, "retry and cow over curl")
        XCTAssertTrue(result.stdout.contains("overlay ok"), result.stdout)
        XCTAssertFalse(nginx.accessLog.contains { $0.contains("\"PUT ") }, "\(nginx.accessLog)")
    }

    func testHTTPSWithCAInfoAndWithSSLVerifyFalse() throws {
        try InteropEnvironment.require("nbdinfo")
        let url = nginx.url(https: true)
        let verified = try InteropEnvironment.serve(
            ["-r", "curl", url, "cainfo=\(nginx.caFile)"], run: "nbdinfo --size \"$uri\"")
        assertSucceeded(verified, "HTTPS with cainfo=")
        XCTAssertEqual(verified.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(nginx.image.count)")
        let unverified = try InteropEnvironment.serve(
            ["-r", "curl", url, "sslverify=false"], run: "nbdinfo --size \"$uri\"")
        assertSucceeded(unverified, "HTTPS with sslverify=false")
        let refused = try InteropEnvironment.serve(["-r", "curl", url, "cainfo=/dev/null"], run: "true")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains(url), refused.stderr)
    }

    func testBasicAuthRightAndWrong() throws {
        try InteropEnvironment.require("nbdinfo")
        let passwordFile = directory.appendingPathComponent("password").path
        try TestNginx.password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let url = nginx.url("/private/disk.img")
        let right = try InteropEnvironment.serve(
            ["-r", "curl", url, "user=\(TestNginx.user)", "password=+\(passwordFile)"], run: "nbdinfo --size \"$uri\"")
        assertSucceeded(right, "the right password")
        let wrong = try InteropEnvironment.serve(
            ["-r", "curl", url, "user=\(TestNginx.user)", "password=nope"], run: "true")
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.stderr.contains("\(url): the server answered HTTP status 401"), wrong.stderr)
    }

    func testMissingImageAndServerWithoutRangesAreRefusedAtStart() throws {
        let missing = try InteropEnvironment.serve(["-r", "curl", nginx.url("/missing/disk.img")], run: "true")
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(
            missing.stderr.contains("\(nginx.url("/missing/disk.img")): the server answered HTTP status 404"),
            missing.stderr)
        let noRanges = try InteropEnvironment.serve(["-r", "curl", nginx.url("/noranges/disk.img")], run: "true")
        XCTAssertNotEqual(noRanges.status, 0)
        XCTAssertTrue(noRanges.stderr.contains("does not honour range requests"), noRanges.stderr)
    }

    /// nginx stops while the CDI stack (readahead, retry) reads, and starts again only after a read
    /// failed below the retry filter (the log filter shows it): the retry filter's next attempt
    /// succeeds and every byte read matches.
    func testWebServerStoppedAndRestartedWhileTheRetryFilterReads() throws {
        try InteropEnvironment.require("python3-libnbd")
        let log = directory.appendingPathComponent("attempts.log").path
        let restart = nginx.commandLine.map { pythonString($0) }.joined(separator: ", ")
        let script = try InteropEnvironment.pythonCommand(
            """
            import nbd, os, signal, subprocess, time
            expected = open(\(pythonString(expected)), "rb").read()
            half = len(expected) // 2 // 4096 * 4096
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            for offset in range(0, half, 1 << 20):
                count = min(1 << 20, half - offset)
                assert h.pread(count, offset) == expected[offset:offset + count], offset
            # Stop nginx (by the pid its master wrote) and wait, bounded, until it is gone.
            pid = int(open(\(pythonString(nginx.pidFile))).read())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while os.path.exists(\(pythonString(nginx.pidFile))):
                if time.monotonic() > deadline:
                    raise SystemExit("nginx did not stop")
                time.sleep(0.001)
            buffer = nbd.Buffer(len(expected) - half)
            cookie = h.aio_pread(buffer, half)
            deadline = time.monotonic() + 30
            while "error=EIO" not in open(\(pythonString(log))).read():
                if time.monotonic() > deadline:
                    raise SystemExit("no failed attempt was logged")
                h.poll(0)
                time.sleep(0.001)
            subprocess.Popen([\(restart)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not h.aio_command_completed(cookie):
                h.poll(-1)
            assert bytes(buffer.to_bytearray()) == expected[half:], "second half differs"
            print("identical after the restart")
            h.shutdown()
            """, in: directory)
        let result = try InteropEnvironment.serve(
            [
                "-r", "--filter=readahead", "--filter=retry", "--filter=log", "curl", nginx.url(),
                "retry-exponential=no", "retry-delay=0.2", "retries=100", "logfile=\(log)", "timeout=20",
            ], run: script)
        assertSucceeded(result, "reading across an nginx restart")
        XCTAssertTrue(result.stdout.contains("identical after the restart"), result.stdout)
    }

    private func pythonString(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }
}

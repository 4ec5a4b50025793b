import Foundation
import XCTest

/// Many clients of one `nbd-serve` at once, as a host serving many VMs has: no cap below the
/// file-descriptor limit, one thread per connection, each client's data its own.
final class ManyClientsInteropTests: XCTestCase {
    /// python libnbd: connect every client first, put one 4 KiB write per client in flight, await them,
    /// then one read per client, and compare. Prints the server's resident memory and thread count
    /// while all clients are connected (from /proc of nbd-serve, the parent of the --run command).
    static let script = """
        import nbd, os, sys, resource
        count = int(sys.argv[1])
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        uri = os.environ["uri"]
        handles = []
        for i in range(count):
            h = nbd.NBD()
            h.connect_uri(uri)
            handles.append(h)
        def drain(cookies):
            # Every request is in flight before the first is awaited; each wait is bounded.
            for h, c in cookies:
                for _ in range(100):
                    if h.aio_command_completed(c):
                        break
                    h.poll(100)
                else:
                    raise SystemExit("a request did not complete within 10 s")
        blocks = [bytes([i % 251 + 1]) * 8 + i.to_bytes(8, "little") * 511 for i in range(count)]
        drain([(h, h.aio_pwrite(blocks[i], i * 4096)) for i, h in enumerate(handles)])
        buffers = [nbd.Buffer(4096) for _ in handles]
        drain([(h, h.aio_pread(buffers[i], i * 4096)) for i, h in enumerate(handles)])
        ok = sum(1 for i in range(count) if buffers[i].to_bytearray() == blocks[i])
        # The server: python's parent is the shell nbd-serve's --run started, or nbd-serve itself.
        pid = os.getppid()
        if open(f"/proc/{pid}/comm").read().strip() != "nbd-serve":
            pid = int(open(f"/proc/{pid}/stat").read().split(")")[1].split()[1])
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
        print("verified", ok, "of", count)
        print("server", open(f"/proc/{pid}/comm").read().strip(), "rss", status["VmRSS"].strip(), "threads", status["Threads"].strip(), "vmsize", status["VmSize"].strip())
        for h in handles:
            h.shutdown()
        """

    func testFiveHundredConcurrentClientsEachWriteAndReadBackTheirOwnBlock() throws {
        try InteropEnvironment.require("python3-libnbd")
        let count = 500
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(Self.script, in: directory) + " \(count)"
        let result = try InteropEnvironment.serve(["--filter=multi-conn", "memory", "1G"], run: command)
        assertSucceeded(result, "\(count) clients")
        XCTAssertTrue(result.stdout.contains("verified \(count) of \(count)"), result.stdout)
        XCTAssertFalse(result.stderr.contains("refused a connection"), result.stderr)
        let threads = result.stdout.split(separator: " ").drop { $0 != "threads" }.dropFirst().first.flatMap { Int($0) }
        XCTAssertGreaterThanOrEqual(
            threads ?? 0, count, "one thread per connection, all open at once: \(result.stdout)")
        print("nbd-serve with \(count) clients:", result.stdout)
    }
}

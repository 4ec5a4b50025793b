import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// `nbd-serve --memory-budget`: many libnbd clients with large reads in flight, and one that never
/// reads its replies, against a small budget. Every read completes with the right data, and the
/// server's peak resident memory grows by little more than the budget.
final class MemoryBudgetInteropTests: XCTestCase {
    /// python libnbd: writes two 8 MiB regions, notes the server's resident memory, starts two 8 MiB
    /// reads on a client it never polls again (its replies stay unread), then puts two 8 MiB reads
    /// per client in flight on `clients` clients and drives them all from one `select` loop, bounded
    /// at 60 s. Prints how many reads returned the right data and how much the server's peak resident
    /// memory (VmHWM, from /proc of nbd-serve) grew.
    static let script = """
        import nbd, os, select, sys, time
        clients = int(sys.argv[1])
        size = 8 << 20
        uri = os.environ["uri"]
        # The server: python's parent is the shell nbd-serve's --run started, or nbd-serve itself.
        pid = os.getppid()
        if open(f"/proc/{pid}/comm").read().strip() != "nbd-serve":
            pid = int(open(f"/proc/{pid}/stat").read().split(")")[1].split()[1])
        def kib(field):
            status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
            return int(status[field].split()[0])
        sanitized = any("asan" in line or "tsan" in line for line in open(f"/proc/{pid}/maps"))
        patterns = [bytes([i + 1]) * size for i in range(2)]
        writer = nbd.NBD()
        writer.connect_uri(uri)
        for i, pattern in enumerate(patterns):
            writer.pwrite(pattern, i * size)
        writer.shutdown()
        base = kib("VmRSS")
        stuck = nbd.NBD()
        stuck.connect_uri(uri)
        stuck_buffers = [nbd.Buffer(size) for _ in range(2)]
        for i, buffer in enumerate(stuck_buffers):
            stuck.aio_pread(buffer, i * size)
        handles = []
        for _ in range(clients):
            h = nbd.NBD()
            h.connect_uri(uri)
            handles.append(h)
        work = []
        for h in handles:
            for i in range(2):
                buffer = nbd.Buffer(size)
                work.append((h, h.aio_pread(buffer, i * size), buffer, i))
        deadline = time.monotonic() + 60
        while True:
            busy = {h.aio_get_fd(): h for h in handles if h.aio_in_flight() > 0}
            if not busy:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the reads did not complete within 60 s")
            reads = [fd for fd, h in busy.items() if h.aio_get_direction() & nbd.AIO_DIRECTION_READ]
            writes = [fd for fd, h in busy.items() if h.aio_get_direction() & nbd.AIO_DIRECTION_WRITE]
            readable, writable, _ = select.select(reads, writes, [], 1.0)
            for fd in readable:
                busy[fd].aio_notify_read()
            for fd in writable:
                busy[fd].aio_notify_write()
        ok = sum(1 for h, cookie, buffer, i in work if h.aio_command_completed(cookie) and buffer.to_bytearray() == patterns[i])
        print("verified", ok, "of", len(work))
        print("peak-growth-kib", kib("VmHWM") - base, "sanitized", sanitized)
        for h in handles:
            h.shutdown()
        """

    func testManyClientsWithLargeReadsStayWithinTheMemoryBudget() throws {
        try InteropEnvironment.require("python3-libnbd")
        let clients = 16
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(Self.script, in: directory) + " \(clients)"
        // glibc's fixed mmap threshold, so that freed payload buffers leave resident memory (its
        // per-thread arenas otherwise keep them; Documentation/Server.md). nbd-serve inherits it.
        setenv("MALLOC_MMAP_THRESHOLD_", "131072", 1)
        defer { unsetenv("MALLOC_MMAP_THRESHOLD_") }
        let result = try InteropEnvironment.serve(["--memory-budget=16M", "memory", "64M"], run: command)
        assertSucceeded(result, "\(clients) clients with 8 MiB reads")
        XCTAssertTrue(result.stdout.contains("verified \(2 * clients) of \(2 * clients)"), result.stdout)
        let words = result.stdout.split(whereSeparator: \.isWhitespace)
        let growth = words.drop { $0 != "peak-growth-kib" }.dropFirst().first.flatMap { Int($0) }
        XCTAssertNotNil(growth, result.stdout)
        // Without the budget the 34 reads in flight take over 100 MiB; with it, 16 MiB of payloads
        // plus each connection's fixed buffers. A sanitizer's allocator keeps freed memory in
        // quarantine, so the bound only holds for a plain build.
        if !result.stdout.contains("sanitized True"), let growth {
            XCTAssertLessThan(growth, 48 << 10, "peak resident memory grew by \(growth) KiB: \(result.stdout)")
        }
        print("nbd-serve --memory-budget=16M with \(clients) clients:", result.stdout)
    }
}

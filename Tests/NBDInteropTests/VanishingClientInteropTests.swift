import Foundation
import XCTest

/// python libnbd clients that go away with reads in flight. nbdkit 1.32 aborts in this situation
/// (`raw_send_socket: Assertion 'sock >= 0' failed`, reproduced with the same script); nbd-serve
/// must keep serving and exit 0.
final class VanishingClientInteropTests: XCTestCase {
    func testClientsVanishingWithReadsInFlightLeaveTheServerServing() throws {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // 64 reads of 1 MiB each are queued, then the handle is dropped: every other round after
        // NBD_CMD_DISC with pending commands abandoned, otherwise by just closing the socket.
        let script = """
            import nbd, os
            uri = os.environ["uri"]
            for round in range(20):
                h = nbd.NBD()
                h.connect_uri(uri)
                for i in range(64):
                    h.aio_pread(nbd.Buffer(1 << 20), i << 20)
                if round % 2 == 0:
                    h.shutdown(nbd.SHUTDOWN_ABANDON_PENDING)
                del h
            h = nbd.NBD()
            h.connect_uri(uri)
            h.pwrite(b"alive", 0)
            print(bytes(h.pread(5, 0)).decode())
            """
        let command = try InteropEnvironment.pythonCommand(script, in: directory)
        let result = try InteropEnvironment.serve(
            ["--filter=stats", "memory", "64M", "statsfile=/dev/null"], run: command)
        assertSucceeded(result, "clients vanishing with reads in flight")
        XCTAssertEqual(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "alive")
    }
}

import Foundation
import XCTest

/// nbdkit's multi-conn scenarios (reference 2.1) over the wire, driven by python libnbd.
final class LibnbdMultiConnInteropTests: XCTestCase {
    private let preamble = """
        import nbd, os, sys
        uri = os.environ["uri"]
        def connect(n):
            hs = []
            for _ in range(n):
                h = nbd.NBD()
                h.connect_uri(uri)
                hs.append(h)
            return hs
        def p(h, n=4):
            print(bytes(h.pread(n, 0)).decode())

        """

    private func runScenario(_ arguments: [String], _ body: String) throws -> [String] {
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let command = try InteropEnvironment.pythonCommand(preamble + body, in: directory)
        let result = try InteropEnvironment.serve(arguments, run: command)
        assertSucceeded(result, "scenario with \(arguments)")
        return result.stdout.split(separator: "\n").map(String.init)
    }

    private let backend = ["connection-cache", "size=32", "init=Initial contents"]

    func testMultiConnGuaranteeOverTheWire() throws {
        try InteropEnvironment.require("python3-libnbd")
        let script = """
            h = connect(3)
            print(h[0].can_multi_conn())
            h[0].cache(12, 0)
            h[1].pwrite(b"Hello ", 0, nbd.CMD_FLAG_FUA)
            p(h[0], 12)
            h[1].pwrite(b"world.", 6)
            h[2].flush()
            p(h[0], 12)
            """
        for arguments in [["--filter=multi-conn"] + backend, ["--filter=multi-conn"] + backend + ["strictfua=true"]] {
            XCTAssertEqual(try runScenario(arguments, script), ["True", "Hello l cont", "Hello world."], "\(arguments)")
        }
        let unsafe = try runScenario(["--filter=multi-conn"] + backend + ["multi-conn-mode=unsafe"], script)
        XCTAssertEqual(unsafe, ["True", "Initial cont", "Initial cont"])
    }

    func testPerConnectionCachesWithoutMultiConnOverTheWire() throws {
        try InteropEnvironment.require("python3-libnbd")
        let script = """
            h = connect(4)
            print(h[0].can_multi_conn())
            p(h[0])
            h[1].pwrite(b"next ", 0)
            p(h[0]); p(h[1]); p(h[2])
            h[2].flush()
            p(h[0]); p(h[1]); p(h[2])
            h[1].flush()
            p(h[0]); p(h[1]); p(h[2]); p(h[3])
            h[0].flush(); h[2].flush()
            p(h[0]); p(h[2])
            """
        let expected = ["False", "Init", "Init", "next", "Init", "Init", "next", "Init", "Init", "next", "Init", "next",
                        "next", "next"]
        XCTAssertEqual(try runScenario(backend, script), expected)
        XCTAssertEqual(try runScenario(["--filter=multi-conn"] + backend + ["multi-conn-mode=plugin"], script), expected)
    }

    func testGroupingByExportNameOverTheWire() throws {
        try InteropEnvironment.require("python3-libnbd")
        let script = """
            def named(name):
                h = nbd.NBD()
                h.set_opt_mode(True)
                h.connect_uri(uri)
                h.set_export_name(name)
                h.opt_go()
                return h
            a1, a2, b1, b2 = named("a"), named("a"), named("b"), named("b")
            a1.pread(1, 0); a2.pwrite(b"A", 0); b1.pread(1, 0); b2.pwrite(b"B", 0, nbd.CMD_FLAG_FUA)
            print(bytes(a1.pread(1, 0)).decode(), bytes(b1.pread(1, 0)).decode())
            """
        XCTAssertEqual(try runScenario(["--filter=multi-conn"] + backend, script), ["A B"])
        XCTAssertEqual(
            try runScenario(["--filter=multi-conn"] + backend + ["multi-conn-exportname=true"], script), ["I B"])
    }

    /// Bad requests get the errors the NBD specification prescribes, and the connection keeps working.
    func testProtocolErrorsReachTheClient() throws {
        try InteropEnvironment.require("python3-libnbd")
        let script = """
            h = nbd.NBD()
            h.set_strict_mode(0)
            h.connect_uri(uri)
            size = h.get_size()
            def errno_of(f):
                try:
                    f()
                    return "ok"
                except nbd.Error as e:
                    return os.strerror(e.errnum) if e.errnum else str(e)
            print(errno_of(lambda: h.pread(512, size)))
            print(errno_of(lambda: h.pwrite(b"x" * 512, size)))
            print(errno_of(lambda: h.trim(512, size)))
            print(errno_of(lambda: h.pread(512, 0)))
            """
        let lines = try runScenario(["memory", "1M"], script)
        XCTAssertEqual(lines, ["Invalid argument", "No space left on device", "Invalid argument", "ok"])
        let readOnly = try runScenario(["-r", "memory", "1M"], """
            h = nbd.NBD()
            h.set_strict_mode(0)
            h.connect_uri(uri)
            try:
                h.pwrite(b"x", 0)
                print("ok")
            except nbd.Error as e:
                print(os.strerror(e.errnum))
            """)
        XCTAssertEqual(readOnly, ["Operation not permitted"])
    }
}

import Foundation
import XCTest

/// `nbd-serve nbd ...` (the `nbd` backend) in front of real NBD servers: nbdkit (memory, the
/// per-connection cache plugin, the error filter), qemu-nbd and nbd-serve itself, driven by nbdinfo,
/// nbdcopy, qemu-img and python libnbd.
///
/// Each test is one shell script: the upstream server is started with `--run` (nbdkit, nbd-serve)
/// or `--fork` (qemu-nbd), so it is ready before the proxy starts and gone when the script ends.
final class ProxyInteropTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func q(_ text: String) -> String { InteropEnvironment.shellQuoted(text) }

    /// Runs `script` with /bin/sh in the test directory; `$SERVE` is nbd-serve, `$DIR` the directory.
    private func shell(_ script: String) throws -> InteropEnvironment.Result {
        try InteropEnvironment.shell(script, in: directory)
    }

    /// Writes `size` bytes of reproducible data with a hole of zeroes in the middle.
    private func makeImage(_ name: String, size: Int) throws -> String {
        var bytes = [UInt8](repeating: 0, count: size)
        var state: UInt64 = 0x9E37_79B9
        for i in 0..<size where !(size / 4..<size / 2).contains(i) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes[i] = UInt8(truncatingIfNeeded: state >> 33)
        }
        let path = directory.appendingPathComponent(name).path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        return path
    }

    /// nbdinfo --json of the upstream and of nbd-serve in front of it, as JSON objects (first export).
    private func exportJSON(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        let exports = object?["exports"] as? [[String: Any]]
        return try XCTUnwrap(exports?.first, "no export in \(text)")
    }

    private static let passedThrough = [
        "export-size", "is_read_only", "can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_cache",
        "can_multi_conn", "is_rotational", "block_size_minimum", "block_size_preferred",
    ]

    private func assertCapabilitiesPassThrough(upstream: String, _ extraUpstreamArguments: String = "") throws {
        let result = try shell(
            """
            nbdkit -U - \(upstream) --run '
                nbdinfo --json "$uri" > upstream.json
                "$SERVE" -U - nbd socket="$unixsocket" \(extraUpstreamArguments) --run "nbdinfo --json \\"\\$uri\\"" > proxy.json
            '
            cat upstream.json; echo ===; cat proxy.json
            """)
        assertSucceeded(result, "nbdinfo through the proxy")
        let parts = result.stdout.components(separatedBy: "===\n")
        XCTAssertEqual(parts.count, 2, result.stdout)
        guard parts.count == 2 else { return }
        let up = try exportJSON(parts[0])
        let proxied = try exportJSON(parts[1])
        for key in Self.passedThrough where up[key] != nil || !key.hasPrefix("block_size") {
            // nbd-serve always advertises block sizes; where the upstream sent none they are the
            // protocol's defaults, which is what the upstream implies.
            XCTAssertEqual("\(up[key] ?? "absent")", "\(proxied[key] ?? "absent")", "\(key) for upstream \(upstream)")
        }
        XCTAssertEqual(
            (proxied["contexts"] as? [String])?.contains("base:allocation"),
            (up["contexts"] as? [String])?.contains("base:allocation"))
    }

    func testAnNbdkitCommandLineWithAPlainURIContainingEqualsWorksUnchanged() throws {
        try InteropEnvironment.require("nbdkit", "nbdinfo")
        let result = try shell(
            """
            nbdkit -U - memory 1M --run '
                "$SERVE" -U - nbd "nbd+unix:///?socket=$unixsocket" --run "nbdinfo --size \\"\\$uri\\""
                nbdkit -U - nbd "nbd+unix:///?socket=$unixsocket" --run "nbdinfo --size \\"\\$uri\\""
            '
            """)
        assertSucceeded(result, "nbd-serve and nbdkit with nbd 'nbd+unix:///?socket=PATH'")
        XCTAssertEqual(result.stdout.split(separator: "\n"), ["1048576", "1048576"], "nbd-serve's answer, then nbdkit's")
    }

    func testCapabilitiesOfNbdkitMemoryPassThrough() throws {
        try InteropEnvironment.require("nbdkit", "nbdinfo")
        try assertCapabilitiesPassThrough(upstream: "memory 1M")
    }

    func testCapabilitiesOfAReadOnlyNbdkitWithoutFlushOrMultiConnPassThrough() throws {
        try InteropEnvironment.require("nbdkit", "nbdinfo")
        try assertCapabilitiesPassThrough(
            upstream: "-r --filter=nozero --filter=noextents --filter=blocksize memory 1M minblock=512 maxdata=64K")
    }

    func testNbdcopyAndQemuImgRoundTripsThroughTheProxyInFrontOfNbdkitMemory() throws {
        try InteropEnvironment.require("nbdkit", "nbdcopy", "qemu-img")
        let source = try makeImage("source.img", size: 8 << 20)
        let result = try shell(
            """
            nbdkit -U - memory 8M --run '
                "$SERVE" -U - nbd socket="$unixsocket" --run "
                    nbdcopy -C 4 --flush \(source) \\$uri && nbdcopy -C 4 \\$uri copy1.img &&
                    qemu-img convert -f raw -O raw \\$uri copy2.img"
            '
            cmp \(q(source)) copy1.img && cmp \(q(source)) copy2.img && echo same
            """)
        assertSucceeded(result, "round trips in front of nbdkit memory")
        XCTAssertTrue(result.stdout.contains("same"), result.stdout)
    }

    func testQemuImgConvertThroughTheProxyInFrontOfQemuNbd() throws {
        try InteropEnvironment.require("qemu-nbd", "qemu-img", "nbdinfo")
        let source = try makeImage("source.img", size: 4 << 20)
        let result = try shell(
            """
            truncate -s 4M backing.img
            qemu-nbd --fork --pid-file qemu.pid -k "$DIR/qemu.sock" -f raw -t backing.img
            trap 'kill $(cat qemu.pid)' EXIT
            "$SERVE" -U - nbd uri="nbd+unix:///?socket=$DIR/qemu.sock" --run '
                qemu-img convert -n -f raw -O raw \(source) "$uri" && qemu-img convert -f raw -O raw "$uri" copy.img &&
                nbdinfo "$uri" | grep -q "export-size: 4194304"'
            cmp \(q(source)) copy.img && cmp \(q(source)) backing.img && echo same
            """)
        assertSucceeded(result, "qemu-img through the proxy in front of qemu-nbd")
        XCTAssertTrue(result.stdout.contains("same"), result.stdout)
    }

    func testNbdcopyThroughTheProxyInFrontOfNbdServeItselfSharingOneConnection() throws {
        try InteropEnvironment.require("nbdcopy")
        let source = try makeImage("source.img", size: 4 << 20)
        let result = try shell(
            """
            "$SERVE" -U - memory 4M --run '
                "$SERVE" -U - nbd uri="nbd+unix:///?socket=$unixsocket" shared=true --run "
                    nbdcopy --flush \(source) \\$uri && nbdcopy \\$uri copy.img"
            '
            cmp \(q(source)) copy.img && echo same
            """)
        assertSucceeded(result, "nbdcopy in front of nbd-serve")
        XCTAssertTrue(result.stdout.contains("same"), result.stdout)
    }

    /// An nbdkit sh plugin with a private cache per connection that does not advertise multi-conn
    /// (the behaviour of nbdkit's own multi-conn test plugin): a write on one connection is visible
    /// to another only after the writer flushes.
    private func writeConnectionCachePlugin() throws -> String {
        let script = """
            #!/bin/bash
            image=$tmpdir/image
            fill() { [ -f "$tmpdir/c$1" ] || cp "$image" "$tmpdir/c$1"; }
            flush() {
                if [ -f "$tmpdir/log$1" ]; then
                    while read -r count offset; do
                        dd if="$tmpdir/c$1" of="$image" bs=64K skip="$offset" seek="$offset" count="$count" \\
                            iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc status=none
                    done < "$tmpdir/log$1"
                fi
                rm -f "$tmpdir/c$1" "$tmpdir/log$1"
            }
            case "$1" in
                get_ready) truncate -s 4M "$image" ;;
                thread_model) echo serialize_all_requests ;;
                open) n=$(( $(cat "$tmpdir/count" 2>/dev/null || echo 0) + 1 )); echo $n > "$tmpdir/count"; echo $n ;;
                get_size) stat -c %s "$image" ;;
                can_write|can_flush|can_trim|can_zero) exit 0 ;;
                can_multi_conn) exit 3 ;;
                can_fua|can_cache) echo native ;;
                pread) fill "$2"; dd if="$tmpdir/c$2" bs=64K skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none ;;
                cache) fill "$2" ;;
                pwrite)
                    fill "$2"
                    dd of="$tmpdir/c$2" bs=64K seek="$4" oflag=seek_bytes conv=notrunc status=none
                    echo "$3 $4" >> "$tmpdir/log$2"
                    case "$5" in *fua*) flush "$2" ;; esac ;;
                zero|trim)
                    fill "$2"
                    dd if=/dev/zero of="$tmpdir/c$2" bs=64K seek="$4" count="$3" oflag=seek_bytes iflag=count_bytes \\
                        conv=notrunc status=none
                    echo "$3 $4" >> "$tmpdir/log$2"
                    case "$5" in *fua*) flush "$2" ;; esac ;;
                flush) flush "$2" ;;
                *) exit 2 ;;
            esac
            """
        let path = directory.appendingPathComponent("connection-cache.sh").path
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(path, 0o755), 0)
        return path
    }

    func testUpstreamWithoutMultiConnIsServedWithoutItUnlessTheMultiConnFilterIsInFront() throws {
        try InteropEnvironment.require("nbdkit", "nbdinfo")
        let plugin = try writeConnectionCachePlugin()
        let result = try shell(
            """
            nbdkit -U - sh \(plugin) --run '
                nbdinfo --can multi-conn "$uri" && echo upstream-multi-conn || echo upstream-single
                "$SERVE" -U - nbd socket="$unixsocket" --run "nbdinfo --can multi-conn \\$uri" && echo plain-multi-conn || echo plain-single
                "$SERVE" -U - --filter=multi-conn nbd socket="$unixsocket" --run "nbdinfo --can multi-conn \\$uri" && echo filtered-multi-conn || echo filtered-single
            '
            """)
        assertSucceeded(result, "multi-conn advertisement")
        XCTAssertTrue(result.stdout.contains("upstream-single"), result.stdout)
        XCTAssertTrue(result.stdout.contains("plain-single"), result.stdout)
        XCTAssertTrue(result.stdout.contains("filtered-multi-conn"), result.stdout)
    }

    func testNbdcopyWithFourConnectionsIsSafeThroughTheMultiConnFilterInFrontOfAConnectionCacheUpstream() throws {
        try InteropEnvironment.require("nbdkit", "nbdcopy", "python3-libnbd")
        let plugin = try writeConnectionCachePlugin()
        let source = try makeImage("source.img", size: 4 << 20)
        // After nbdcopy's final flush every connection's private cache must be in the image: a fresh
        // connection (another cache) reads back exactly the source.
        let result = try shell(
            """
            nbdkit -U - sh \(plugin) --run '
                "$SERVE" -U - --filter=multi-conn nbd socket="$unixsocket" --run "nbdcopy -C 4 --flush \(source) \\$uri"
                nbdcopy "$uri" copy.img
            '
            cmp \(q(source)) copy.img && echo same
            """)
        assertSucceeded(result, "nbdcopy -C 4 through --filter=multi-conn")
        XCTAssertTrue(result.stdout.contains("same"), result.stdout)
    }

    func testUpstreamErrorsReachLibnbdWithTheirErrno() throws {
        try InteropEnvironment.require("nbdkit", "python3-libnbd")
        let script = try InteropEnvironment.pythonCommand(
            """
            import errno, nbd, os
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            for name, call, expected in [
                ("pread", lambda: h.pread(512, 0), errno.EIO),
                ("pwrite", lambda: h.pwrite(b"x" * 512, 0), errno.ENOSPC),
                ("trim", lambda: h.trim(512, 0), errno.EPERM),
                ("zero", lambda: h.zero(512, 0), errno.ESHUTDOWN),
            ]:
                try:
                    call()
                    print(name, "succeeded")
                except nbd.Error as e:
                    code = e.errno if isinstance(e.errno, int) else getattr(errno, e.errno, -1)
                    print(name, "errno", e.errno, "ok" if code == expected else "wrong")
            """, in: directory)
        let result = try shell(
            """
            export PY=\(q(script))
            nbdkit -U - --filter=error memory 1M error-pread=EIO error-pwrite=ENOSPC error-trim=EPERM error-zero=ESHUTDOWN \
                error-pread-rate=1 error-pwrite-rate=1 error-trim-rate=1 error-zero-rate=1 --run '
                "$SERVE" -U - nbd socket="$unixsocket" --run "$PY"
            '
            """)
        assertSucceeded(result, "errors through the proxy")
        for name in ["pread", "pwrite", "trim", "zero"] {
            XCTAssertTrue(result.stdout.contains("\(name) errno"), result.stdout)
        }
        XCTAssertFalse(result.stdout.contains("wrong"), result.stdout)
        XCTAssertFalse(result.stdout.contains("succeeded"), result.stdout)
        XCTAssertEqual(result.stdout.components(separatedBy: " ok").count - 1, 4, result.stdout)
    }

    func testUpstreamKilledWithRequestsInFlightFailsThemAndANewClientGetsANewUpstream() throws {
        try InteropEnvironment.require("nbdkit", "python3-libnbd")
        let script = try InteropEnvironment.pythonCommand(
            """
            import errno, nbd, os, signal, subprocess, time
            up = os.environ["UPSOCK"]
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            h.pwrite(b"a" * 4096, 0)
            # The delay filter holds reads upstream, so these are in flight when the upstream dies.
            cookies = [h.aio_pread(nbd.Buffer(4096), i * 4096) for i in range(8)]
            os.kill(int(open(os.environ["UPPID"]).read()), signal.SIGKILL)
            deadline = time.monotonic() + 60
            while h.aio_in_flight() > 0:
                if time.monotonic() > deadline:
                    print("TIMEOUT waiting for in-flight replies"); raise SystemExit(1)
                h.poll(1)
            codes = set()
            for c in cookies:
                try:
                    h.aio_command_completed(c); codes.add("success")
                except nbd.Error as e:
                    codes.add(e.errno)
            print("in-flight", sorted(map(str, codes)))
            try:
                h.pread(512, 0); print("later read succeeded")
            except nbd.Error as e:
                print("later", e.errno)
            # The upstream comes back at the same socket; a new client connection uses it.
            os.unlink(up)
            subprocess.run(["nbdkit", "-P", os.environ["UPPID"], "-U", up, "memory", "1M"], check=True)
            try:
                g = nbd.NBD(); g.connect_uri(os.environ["uri"])
                g.pwrite(b"b" * 512, 0); print("new connection", bytes(g.pread(1, 0)))
                g.shutdown()
            finally:
                os.kill(int(open(os.environ["UPPID"]).read()), signal.SIGTERM)
            """, in: directory)
        let result = try shell(
            """
            export UPSOCK="$DIR/up.sock" UPPID="$DIR/up.pid"
            nbdkit -P "$UPPID" -U "$UPSOCK" --filter=delay memory 1M delay-read=3
            trap 'kill -9 $(cat "$UPPID") 2>/dev/null || true' EXIT
            "$SERVE" -U - nbd socket="$UPSOCK" --run \(q(script))
            """)
        assertSucceeded(result, "upstream killed with requests in flight")
        let allowed = ["'EIO'", "'ESHUTDOWN'"]
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("in-flight") }.map(String.init) ?? ""
        XCTAssertFalse(line.isEmpty, result.stdout)
        XCTAssertFalse(line.contains("success"), result.stdout)
        XCTAssertTrue(allowed.contains { line.contains($0) }, result.stdout)
        XCTAssertTrue(
            result.stdout.contains("later EIO") || result.stdout.contains("later ESHUTDOWN"), result.stdout)
        XCTAssertTrue(result.stdout.contains("new connection b'b'"), result.stdout)
    }
}

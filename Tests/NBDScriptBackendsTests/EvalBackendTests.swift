import Foundation
import Glibc
import NBDCore
import NBDTestSupport
import XCTest

@testable import NBDScriptBackends

/// The eval backend from its parameters to requests: nbdkit's methods, arguments and exit codes.
final class EvalBackendTests: XCTestCase {
    /// A disk in `$tmpdir/disk` (made by config=), read and written with dd, as nbdkit's manual
    /// page shows the eval plugin standing in for the file plugin.
    static let fileMethods: ParameterValues = [
        "config": #"[ "$2" = size ] && truncate -s "$3" $tmpdir/disk"#,
        "get_size": "stat -Lc %s $tmpdir/disk",
        "pread": "dd if=$tmpdir/disk skip=$4 count=$3 iflag=count_bytes,skip_bytes status=none",
        "pwrite": "dd of=$tmpdir/disk seek=$4 conv=notrunc oflag=seek_bytes status=none",
        "size": "1M",
    ]

    private func start(_ parameters: ParameterValues, readOnly: Bool = false) async throws -> EvalBackendProvider {
        try await withBoundedWait("eval start") {
            try await EvalBackendProvider(parameters: parameters, options: BackendOptions(isReadOnly: readOnly))
        }
    }

    private func open(_ provider: EvalBackendProvider, export: String = "", readOnly: Bool = false) async throws
        -> ScriptBackend
    {
        try await withBoundedWait("eval open") {
            try await provider.open(ConnectionInfo(exportName: export, isReadOnly: readOnly))
        }
    }

    func testGetSizeAndPreadMakeAReadOnlyDiskOfZeroes() async throws {
        let provider = try await start([
            "get_size": "echo 64M", "pread": "dd if=/dev/zero count=$3 iflag=count_bytes status=none",
        ])
        let backend = try await open(provider)
        XCTAssertEqual(backend.capabilities.size, 64 << 20)
        XCTAssertFalse(backend.capabilities.isWritable, "no pwrite: no can_write")
        XCTAssertFalse(backend.capabilities.canFlush)
        XCTAssertFalse(backend.capabilities.canExtents)
        XCTAssertEqual(backend.capabilities.cache, .none)
        XCTAssertEqual(backend.capabilities.suspendingOperations, .all)
        let bytes = try await withBoundedWait("pread") { try await backend.readBytes(4096, at: 1 << 20) }
        XCTAssertEqual(bytes, [UInt8](repeating: 0, count: 4096))
        await backend.close()
        await provider.shutdown()
    }

    func testWritesGoToTheScriptsStdinAndReadBack() async throws {
        let provider = try await start(Self.fileMethods)
        let backend = try await open(provider)
        XCTAssertTrue(backend.capabilities.isWritable, "pwrite= implies can_write")
        XCTAssertEqual(backend.capabilities.size, 1 << 20)
        let data = (0..<10000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try await withBoundedWait("pwrite") { try await backend.writeBytes(data, at: 4095) }
        let back = try await withBoundedWait("pread") { try await backend.readBytes(data.count, at: 4095) }
        XCTAssertEqual(back, data)
        await backend.close()
        await provider.shutdown()
    }

    func testZeroWithoutAZeroMethodIsWrittenWithPwriteAndAFastZeroFailsAtOnce() async throws {
        let provider = try await start(Self.fileMethods)
        let backend = try await open(provider)
        XCTAssertTrue(backend.capabilities.canZero)
        XCTAssertTrue(backend.capabilities.canFastZero, "nbdkit offers fast zero when zeroing is emulated")
        try await withBoundedWait("pwrite") {
            try await backend.writeBytes([UInt8](repeating: 0xAA, count: 8192), at: 0)
        }
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.zero(count: 4096, at: 0, flags: .fastZero) }, code: .notSupported
        )
        try await withBoundedWait("zero") { try await backend.zero(count: 4096, at: 1024, flags: []) }
        let back = try await withBoundedWait("pread") { try await backend.readBytes(8192, at: 0) }
        XCTAssertEqual(
            back,
            [UInt8](repeating: 0xAA, count: 1024) + [UInt8](repeating: 0, count: 4096)
                + [UInt8](repeating: 0xAA, count: 3072))
        await backend.close()
        await provider.shutdown()
    }

    func testAZeroMethodThatPrintsENOTSUPFallsBackToPwriteWithNbdkitsFlags() async throws {
        var parameters = Self.fileMethods
        parameters.append("zero", #"echo "$5" >> $tmpdir/zero-flags; echo ENOTSUP >&2; exit 1"#)
        let provider = try await start(parameters)
        let backend = try await open(provider)
        XCTAssertFalse(backend.capabilities.canFastZero, "zero= given and no can_fast_zero: not offered")
        try await withBoundedWait("pwrite") { try await backend.writeBytes([UInt8](repeating: 1, count: 512), at: 0) }
        try await withBoundedWait("zero") { try await backend.zero(count: 512, at: 0, flags: [.fua]) }
        try await withBoundedWait("zero") { try await backend.zero(count: 512, at: 0, flags: [.noHole]) }
        let back = try await withBoundedWait("pread") { try await backend.readBytes(512, at: 0) }
        XCTAssertEqual(back, [UInt8](repeating: 0, count: 512))
        let flags = try String(contentsOfFile: provider.temporaryDirectory + "/zero-flags", encoding: .utf8)
        XCTAssertEqual(flags, "fua,may_trim\n\n", "may_trim unless NO_HOLE")
        await backend.close()
        await provider.shutdown()
    }

    func testTheHandleOpenPrintsIsTheSecondArgumentOfLaterCalls() async throws {
        let provider = try await start([
            "open": #"echo "handle-$3""#,
            "get_size": #"[ "$2" = handle-disk1 ] || { echo EINVAL wrong handle "$2" >&2; exit 1; }; echo 512"#,
            "pread": #"[ "$2" = handle-disk1 ] && dd if=/dev/zero count=$3 iflag=count_bytes status=none"#,
        ])
        let backend = try await open(provider, export: "disk1")
        XCTAssertEqual(backend.capabilities.size, 512)
        _ = try await withBoundedWait("pread") { try await backend.readBytes(512, at: 0) }
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await provider.open(ConnectionInfo(exportName: "other")) },
            code: .invalidArgument)
        await provider.shutdown()
    }

    func testDefaultExportNamesTheExportAnEmptyNameOpens() async throws {
        let provider = try await start([
            "default_export": "printf 'NAMES\\nfirst\\nsecond\\n'",
            "open": #"echo "$3""#,
            "get_size": #"echo "$2" | wc -c"#,
            "pread": "dd if=/dev/zero count=$3 iflag=count_bytes status=none",
        ])
        let name = try await withBoundedWait("default_export") {
            try await provider.defaultExport(ConnectionInfo(exportName: ""))
        }
        XCTAssertEqual(name, "first", "the first name of the NAMES form")
        let backend = try await open(provider, export: name)
        XCTAssertEqual(backend.capabilities.size, 6, "open saw 'first'")
        await provider.shutdown()
    }

    func testListExportsGivesNamesAndDescriptionsAndPreconnectCanRefuse() async throws {
        let provider = try await start([
            "get_size": "echo 1M", "pread": "exit 1",
            "list_exports": #"[ "$2 $3" = "true false" ] && printf 'NAMES+DESCRIPTIONS\na\nb\nfirst\nsecond\n'"#,
            "preconnect": #"[ "$2" = true ] || { echo EPERM read-only clients only >&2; exit 1; }"#,
        ])
        let exports = try await withBoundedWait("list_exports") {
            try await provider.listExports(ConnectionInfo(exportName: "", isReadOnly: true))
        }
        XCTAssertEqual(exports, [ExportEntry(name: "a", description: "first"), ExportEntry(name: "b", description: "second")])
        try await withBoundedWait("preconnect") {
            try await provider.preconnect(ConnectionInfo(exportName: "", isReadOnly: true))
        }
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await provider.preconnect(ConnectionInfo(exportName: "")) },
            code: .notPermitted)
        await provider.shutdown()
    }

    func testWithoutListExportsTheDefaultExportIsListedAlone() async throws {
        let provider = try await start(["get_size": "echo 1M", "pread": "exit 1", "default_export": "echo disk"])
        let exports = try await withBoundedWait("list_exports") {
            try await provider.listExports(ConnectionInfo(exportName: ""))
        }
        XCTAssertEqual(exports, [ExportEntry(name: "disk")])
        await provider.shutdown()
    }

    func testErrnoNamesReachTheCallerAndABadScriptIsAnErrorNotACrash() async throws {
        let provider = try await start([
            "get_size": "echo 1M",
            "pread": #"""
            case $4 in
                0) echo 'ENOSPC custom message' >&2; exit 1 ;;
                512) printf eperm >&2; exit 1 ;;
                1024) dd if=/dev/zero count=1 iflag=count_bytes status=none ;;
                1536) kill -SEGV $$ ;;
                2048) exit 3 ;;
                *) exit 1 ;;
            esac
            """#,
        ])
        let backend = try await open(provider)
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.readBytes(512, at: 0) }, code: .noSpace)
        XCTAssertTrue(error?.message.contains("custom message") ?? false, "\(String(describing: error))")
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.readBytes(512, at: 512) }, code: .notPermitted)
        let short = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.readBytes(512, at: 1024) }, code: .ioError)
        XCTAssertTrue(short?.message.contains("printed 1 bytes") ?? false, "\(String(describing: short))")
        let killed = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.readBytes(512, at: 1536) }, code: .ioError)
        XCTAssertTrue(killed?.message.contains("signal 11") ?? false, "\(String(describing: killed))")
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.readBytes(512, at: 2048) }, code: .ioError)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.readBytes(512, at: 4096) }, code: .ioError)
        // Still serving after all that.
        _ = try await withBoundedWait("pread") { try await backend.readBytes(1, at: 1024) }
        await provider.shutdown()
    }

    func testAPwriteThatIgnoresItsInputSucceeds() async throws {
        let previous = signal(SIGPIPE, SIG_DFL)
        defer { signal(SIGPIPE, previous) }
        let provider = try await start([
            "get_size": "echo 64M", "pread": "exit 1",
            "pwrite": #"[ $4 -lt 33554432 ] || { echo 'ENOSPC Out of space' >&2; exit 1; }"#,
        ])
        let backend = try await open(provider)
        let data = [UInt8](repeating: 0x5A, count: 4 << 20)
        try await withBoundedWait("pwrite") { try await backend.writeBytes(data, at: 0) }
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.writeBytes(data, at: 32 << 20) }, code: .noSpace)
        await provider.shutdown()
    }

    func testMissingRunsForEveryMethodWithoutASnippet() async throws {
        let log = NSTemporaryDirectory() + "eval-missing-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        defer { unlink(log) }
        let provider = try await start([
            "get_size": "echo 64M", "pread": "dd if=/dev/zero count=$3 iflag=count_bytes status=none",
            "missing": #"echo "in missing: $1" >> "# + log + "; exit 2",
            "unload": "",
        ])
        try await withBoundedWait("preconnect") { try await provider.preconnect(ConnectionInfo(exportName: "")) }
        let backend = try await open(provider)
        await backend.close()
        await provider.shutdown()
        let text = try String(contentsOfFile: log, encoding: .utf8)
        for method in [
            "config_complete", "thread_model", "get_ready", "after_fork", "preconnect", "open", "can_write",
            "is_rotational", "close",
        ] {
            XCTAssertTrue(text.contains("in missing: \(method)\n"), "\(method) not in:\n\(text)")
        }
        XCTAssertFalse(text.contains("in missing: unload"), "unload= is given (empty)")
    }

    func testCanMethodsAndBlockSizeShapeTheCapabilities() async throws {
        let provider = try await start([
            "get_size": "echo 1M", "pread": "exit 1", "pwrite": "cat >/dev/null", "flush": "",
            "can_fua": "echo native", "can_multi_conn": "exit 0", "is_rotational": "exit 0",
            "can_trim": "exit 3", "cache": "", "block_size": "echo 512 4K 64K", "extents": "echo 0 1M hole,zero",
        ])
        let backend = try await open(provider)
        let caps = backend.capabilities
        XCTAssertTrue(caps.isWritable)
        XCTAssertTrue(caps.canFlush)
        XCTAssertEqual(caps.fua, .native)
        XCTAssertTrue(caps.canMultiConn)
        XCTAssertTrue(caps.isRotational)
        XCTAssertFalse(caps.canTrim)
        XCTAssertEqual(caps.cache, .native, "cache= implies can_cache native")
        XCTAssertTrue(caps.canExtents)
        XCTAssertEqual(caps.blockSize.minimum, 512)
        XCTAssertEqual(caps.blockSize.preferred, 4096)
        XCTAssertEqual(caps.blockSize.maximumPayload, 65536)
        let extents = try await withBoundedWait("extents") {
            try await backend.extents(count: 4096, at: 8192, flags: [])
        }
        XCTAssertEqual(extents, [.hole(4096)])
        let readOnly = try await open(provider, readOnly: true)
        XCTAssertFalse(readOnly.capabilities.isWritable)
        XCTAssertEqual(readOnly.capabilities.fua, .none)
        await provider.shutdown()
    }

    func testChildrenInheritNoDescriptorBlockedSignalOrIgnoredSignal() async throws {
        let leaked = Glibc.open("/dev/null", O_RDONLY)  // deliberately without O_CLOEXEC
        XCTAssertGreaterThan(leaked, 2)
        defer { Glibc.close(leaked) }
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous) }
        let provider = try await start([
            "get_size": "echo 512",
            "pread": #"""
            [ -e /proc/$$/fd/\#(leaked) ] && { echo 'EINVAL descriptor \#(leaked) leaked' >&2; exit 1; }
            # Signals 1 to 31 (32 and up are glibc's own and realtime signals).
            ignored=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status)
            blocked=$(sed -n 's/^SigBlk:[[:space:]]*//p' /proc/$$/status)
            [ $((0x$ignored & 0x7fffffff)) -eq 0 ] || { echo "EPERM a signal is ignored: $ignored" >&2; exit 1; }
            [ $((0x$blocked & 0x7fffffff)) -eq 0 ] || { echo "ENOMEM a signal is blocked: $blocked" >&2; exit 1; }
            dd if=/dev/zero count=$3 iflag=count_bytes status=none
            """#,
        ])
        let backend = try await open(provider)
        _ = try await withBoundedWait("pread") { try await backend.readBytes(512, at: 0) }
        await provider.shutdown()
    }

    func testTmpdirIsRemovedAtShutdownAfterUnload() async throws {
        let marker = NSTemporaryDirectory() + "eval-unload-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(marker) }
        let provider = try await start([
            "get_size": "echo 512", "pread": "exit 1", "get_ready": "touch $tmpdir/state",
            "unload": #"[ -e $tmpdir/state ] && touch "# + marker,
        ])
        let directory = provider.temporaryDirectory
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/state"))
        await provider.shutdown()
        XCTAssertTrue(FileManager.default.fileExists(atPath: marker), "unload ran while $tmpdir was still there")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory))
    }

    func testBadParametersAreRefusedAtStartNamingTheParameter() async throws {
        var error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await EvalBackendProvider(parameters: ["pread": "exit 1"], options: BackendOptions())
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("get_size") ?? false, "\(String(describing: error))")
        error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await EvalBackendProvider(
                    parameters: ["get_size": "echo 1", "file": "x"], options: BackendOptions())
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("file=x") ?? false, "\(String(describing: error))")
        error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await EvalBackendProvider(
                    parameters: ["get_size": "echo 1", "get_size": "echo 2"], options: BackendOptions())
            }, code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("get_size") ?? false, "\(String(describing: error))")
        error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await EvalBackendProvider(
                    parameters: [
                        "get_size": "echo 1", "config": #"echo "EINVAL unknown $2" >&2; exit 1"#, "disk": "y",
                    ],
                    options: BackendOptions())
            }, code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("disk=y") ?? false, "\(String(describing: error))")
        let provider = try await start(["get_size": "echo lots", "pread": "exit 1"])
        let sizeError = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await provider.open(ConnectionInfo()) }, code: .ioError)
        XCTAssertTrue(sizeError?.message.contains("get_size") ?? false, "\(String(describing: sizeError))")
        await provider.shutdown()
    }

    /// Under `parallel`, four reads run at once: each script waits (a bounded number of polls)
    /// until all four have started, which only happens if none waits for another.
    func testParallelThreadModelRunsCallsAtOnce() async throws {
        let provider = try await start([
            "thread_model": "echo parallel", "get_size": "echo 1M",
            "pread": #"""
            touch $tmpdir/arrived-$4
            tries=0
            while [ "$(ls $tmpdir | grep -c arrived-)" -lt 4 ]; do
                tries=$((tries + 1))
                [ $tries -lt 3000 ] || { echo "EIO only $(ls $tmpdir | grep -c arrived-) calls ran at once" >&2; exit 1; }
                sleep 0.01
            done
            dd if=/dev/zero count=$3 iflag=count_bytes status=none
            """#,
        ])
        XCTAssertEqual(provider.provider.threadModel, .parallel)
        let backend = try await open(provider)
        try await withBoundedWait("four reads") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<4 {
                    group.addTask { _ = try await backend.readBytes(512, at: UInt64(index) * 512) }
                }
                try await group.waitForAll()
            }
        }
        await provider.shutdown()
    }

    /// Under the default thread model no two calls overlap: each script takes a directory as a
    /// lock and fails if another holds it.
    func testDefaultThreadModelSerialisesCallsAcrossConnections() async throws {
        let provider = try await start([
            "get_size": "echo 1M",
            "pread": #"""
            mkdir $tmpdir/busy 2>/dev/null || { echo 'EIO two calls at once' >&2; exit 1; }
            dd if=/dev/zero count=$3 iflag=count_bytes status=none
            rmdir $tmpdir/busy
            """#,
        ])
        XCTAssertEqual(provider.provider.threadModel, .serializeAllRequests)
        let first = try await open(provider)
        let second = try await open(provider)
        try await withBoundedWait("eight reads") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<8 {
                    let backend = index % 2 == 0 ? first : second
                    group.addTask { _ = try await backend.readBytes(512, at: UInt64(index) * 512) }
                }
                try await group.waitForAll()
            }
        }
        await provider.shutdown()
    }
}

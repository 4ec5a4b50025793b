import Foundation
import Glibc
import NBDCore
import NBDTestSupport
import XCTest

@testable import NBDScriptBackends

/// The sh backend: one executable called as `SCRIPT METHOD ARGS...`, configured by its `config`
/// method, in the shape of nbdkit's example plugin.
final class ShBackendTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "sh-backend-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A file-backed plugin: `file=` in config, dd for reads and writes, extents in two halves.
    static let filePlugin = #"""
        #!/bin/sh
        f=$tmpdir/file
        case "$1" in
            config)
                [ "$2" = file ] || { echo "EINVAL unknown parameter $2" >&2; exit 1; }
                [ -r "$3" ] || { echo "file $3 cannot be read" >&2; exit 1; }
                ln -sf "$(realpath "$3")" $f ;;
            config_complete) [ -L $f ] || { echo "file= is missing" >&2; exit 1; } ;;
            thread_model) echo parallel ;;
            open) mktemp -d $tmpdir/handle-XXXXXX ;;
            get_size) stat -L -c %s $f ;;
            pread) dd iflag=skip_bytes,count_bytes skip=$4 count=$3 if=$f status=none ;;
            pwrite) dd oflag=seek_bytes conv=notrunc seek=$4 of=$f status=none ;;
            can_write|can_extents|can_flush) exit 0 ;;
            flush) sync ;;
            extents) echo "$4 $(($3/2)) 0"; echo "$(($4+$3/2)) $(($3-$3/2)) hole,zero" ;;
            close) rmdir "$2" ;;
            magic_config_key) echo file ;;
            *) exit 2 ;;
        esac
        """#

    private func writeScript(_ text: String, name: String = "plugin.sh", mode: mode_t = 0o755) throws -> String {
        let path = "\(directory)/\(name)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, mode)
        return path
    }

    private func start(_ parameters: ParameterValues) async throws -> ShBackendProvider {
        try await withBoundedWait("sh start") {
            try await ShBackendProvider(parameters: parameters, options: BackendOptions())
        }
    }

    func testAFilePluginReadsWritesAndReportsExtents() async throws {
        let script = try writeScript(Self.filePlugin)
        let disk = "\(directory)/disk.img"
        try Data(count: 1 << 16).write(to: URL(fileURLWithPath: disk))
        let provider = try await start(["script": script, "file": disk])
        XCTAssertEqual(provider.provider.threadModel, .parallel)
        let backend = try await withBoundedWait("open") { try await provider.open(ConnectionInfo()) }
        XCTAssertTrue(backend.handle.hasPrefix(provider.temporaryDirectory + "/handle-"), backend.handle)
        XCTAssertEqual(backend.capabilities.size, 1 << 16)
        XCTAssertTrue(backend.capabilities.isWritable)
        XCTAssertEqual(backend.capabilities.fua, .emulated, "no can_fua, can_flush: emulated")
        try await withBoundedWait("pwrite") { try await backend.writeString("hello", at: 100) }
        try await withBoundedWait("flush") { try await backend.flush(flags: []) }
        let text = try await withBoundedWait("pread") { try await backend.readString(5, at: 100) }
        XCTAssertEqual(text, "hello")
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: disk))[100..<105]), Array("hello".utf8))
        let extents = try await withBoundedWait("extents") { try await backend.extents(count: 4096, at: 0, flags: []) }
        XCTAssertEqual(extents, [.data(2048), .hole(2048)])
        await backend.close()
        XCTAssertFalse(FileManager.default.fileExists(atPath: backend.handle), "close got the handle")
        let temporary = provider.temporaryDirectory
        await provider.shutdown()
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary))
    }

    func testAPlainArgumentAfterTheScriptGoesToConfigUnderTheMagicKey() async throws {
        let script = try writeScript(Self.filePlugin)
        let disk = "\(directory)/disk.img"
        try Data(count: 8192).write(to: URL(fileURLWithPath: disk))
        let provider = try await start(["script": script, "script": disk])
        let backend = try await withBoundedWait("open") { try await provider.open(ConnectionInfo()) }
        XCTAssertEqual(backend.capabilities.size, 8192, "disk.img is file=disk.img")
        await backend.close()
        await provider.shutdown()
        let plain = try writeScript(#"case "$1" in get_size) echo 1 ;; *) exit 2 ;; esac"#, name: "plain.sh")
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await ShBackendProvider(parameters: ["script": plain, "script": disk], options: BackendOptions())
            }, code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("expected KEY=VALUE") ?? false, "\(String(describing: error))")
    }

    func testAScriptWithoutShebangRunsUnderBinSh() async throws {
        let script = try writeScript(
            #"case "$1" in get_size) echo 4K ;; pread) dd if=/dev/zero count=$3 iflag=count_bytes status=none ;; *) exit 2 ;; esac"#
        )
        let provider = try await start(["script": script])
        XCTAssertEqual(provider.provider.threadModel, .serializeAllRequests, "no thread_model: the safe default")
        let backend = try await withBoundedWait("open") { try await provider.open(ConnectionInfo()) }
        XCTAssertEqual(backend.capabilities.size, 4096)
        XCTAssertFalse(backend.capabilities.isWritable, "sh: can_write must be given")
        await provider.shutdown()
    }

    func testBadParametersAreRefusedAtStartNamingTheParameter() async throws {
        var error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await ShBackendProvider(
                    parameters: ["script": "\(self.directory)/absent.sh"], options: BackendOptions())
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("script=") ?? false, "\(String(describing: error))")
        let notExecutable = try writeScript("exit 2", name: "plain.sh", mode: 0o644)
        error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await ShBackendProvider(parameters: ["script": notExecutable], options: BackendOptions())
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("chmod +x") ?? false, "\(String(describing: error))")
        let script = try writeScript(Self.filePlugin)
        error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await ShBackendProvider(parameters: ["script": script, "size": "1M"], options: BackendOptions())
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("size=1M") ?? false, "\(String(describing: error))")
        error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await ShBackendProvider(parameters: ["script": script], options: BackendOptions())
            }, code: .ioError)
        XCTAssertTrue(error?.message.contains("file= is missing") ?? false, "\(String(describing: error))")
        let noConfig = try writeScript("exit 2", name: "noconfig.sh")
        error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try await ShBackendProvider(parameters: ["script": noConfig, "a": "b"], options: BackendOptions())
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("a=b") ?? false, "\(String(describing: error))")
    }
}

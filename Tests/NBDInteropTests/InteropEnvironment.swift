import Foundation
import XCTest

/// Runs the real `nbd-serve` executable against real NBD clients (libnbd, qemu, fio).
///
/// A test whose tool is missing is skipped with a message naming the tool and the Debian package
/// that provides it, unless `NBD_INTEROP=required` (as `.ci/run` sets), in which case it fails.
enum InteropEnvironment {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Tools and the Debian packages that provide them.
    static let packages: [String: String] = [
        "nbdinfo": "libnbd-bin", "nbdcopy": "libnbd-bin", "qemu-img": "qemu-utils", "qemu-io": "qemu-utils",
        "qemu-nbd": "qemu-utils",
        "fio": "fio", "nbdkit": "nbdkit", "python3-libnbd": "python3-libnbd",
        "certtool": "gnutls-bin", "psktool": "gnutls-bin", "openssl": "openssl", "promtool": "prometheus",
        "xz": "xz-utils", "gzip": "gzip", "bzip2": "bzip2", "lzip": "lzip", "tar": "tar",
        "sfdisk": "fdisk", "sgdisk": "gdisk",
        "mkfs.ext4": "e2fsprogs", "debugfs": "e2fsprogs", "e2fsck": "e2fsprogs",
    ]

    static var isRequired: Bool { ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" }

    /// The absolute path of `tool` on the search path (with /usr/bin first), or nil.
    static func path(of tool: String) -> String? {
        let searchPath =
            "/usr/bin:/usr/local/bin:/bin:/usr/sbin:/sbin:" + (ProcessInfo.processInfo.environment["PATH"] ?? "")
        for directory in searchPath.split(separator: ":") {
            let candidate = "\(directory)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Skips (or, when required, fails) unless every tool is installed. `python3-libnbd` means the
    /// `nbd` module of /usr/bin/python3 (the first python3 on PATH may lack it).
    static func require(_ tools: String..., file: StaticString = #filePath, line: UInt = #line) throws {
        for tool in tools {
            let present: Bool
            if tool == "python3-libnbd" {
                present = (try? run("/usr/bin/python3", ["-c", "import nbd"]).status) == 0
            } else {
                present = path(of: tool) != nil
            }
            guard !present else { continue }
            let message = "\(tool) is not installed (Debian package \(packages[tool] ?? tool)); run .ci/run or apt-get install it"
            if isRequired {
                XCTFail("NBD_INTEROP=required but \(message)", file: file, line: line)
                throw XCTSkip("failed: \(message)")
            }
            throw XCTSkip(message)
        }
    }

    /// Skips (or, when required, fails) unless qemu-img, qemu-io and qemu-nbd are installed and are
    /// 8.2 or newer, the first qemu that speaks NBD extended headers (Debian 12 has 7.2; its
    /// bookworm-backports suite has 10, which .ci/run installs).
    static func requireQemuWithExtendedHeaders(file: StaticString = #filePath, line: UInt = #line) throws {
        try require("qemu-img", "qemu-io", "qemu-nbd", file: file, line: line)
        let version = try run(path(of: "qemu-nbd") ?? "qemu-nbd", ["--version"]).stdout
        // "qemu-nbd 10.0.2 (Debian ...)"
        let numbers = version.split(separator: " ").dropFirst().first?.split(separator: ".").compactMap { Int($0) } ?? []
        guard numbers.count >= 2, (numbers[0], numbers[1]) >= (8, 2) else {
            let message =
                "qemu \(version.split(separator: "\n").first ?? "") does not speak NBD extended headers (8.2 or newer does): install qemu-utils from bookworm-backports (apt-get install -t bookworm-backports qemu-utils), as .ci/run does"
            if isRequired {
                XCTFail("NBD_INTEROP=required but \(message)", file: file, line: line)
                throw XCTSkip("failed: \(message)")
            }
            throw XCTSkip(message)
        }
    }

    /// The `nbd-serve` executable built next to this test bundle (or `NBD_SERVE` if set).
    static var nbdServe: String {
        get throws {
            if let explicit = ProcessInfo.processInfo.environment["NBD_SERVE"] { return explicit }
            var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            for _ in 0..<4 {
                let candidate = directory.appendingPathComponent("nbd-serve").path
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
                directory = directory.deletingLastPathComponent()
            }
            throw XCTSkip("nbd-serve was not built next to the tests; run `swift build` first or set NBD_SERVE")
        }
    }

    /// A new empty directory for one test's files.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nbd-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs `nbd-serve ARGS --run COMMAND` on a private Unix socket and returns what COMMAND printed
    /// and its exit status (which nbd-serve passes on).
    static func serve(_ arguments: [String], run command: String) throws -> Result {
        try run(try nbdServe, ["-U", "-"] + arguments + ["--run", command])
    }

    /// Runs a program to completion. Output goes to files, so a chatty program cannot block on a full
    /// pipe. A watchdog ends a hung run after 5 minutes so that a broken server fails the test
    /// instead of hanging CI.
    static func run(_ executable: String, _ arguments: [String]) throws -> Result {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("stdout")
        let err = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = "/usr/bin:/usr/local/bin:/bin:" + (environment["PATH"] ?? "")
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 300, execute: watchdog)
        process.waitUntilExit()
        watchdog.cancel()
        return Result(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// Quotes `text` for /bin/sh.
    static func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Runs `script` with `/bin/sh -e` in `directory` (as `test.sh` there), with `$SERVE` set to
    /// nbd-serve, `$DIR` to the directory and each of `exports` exported in order (a value may use
    /// the ones before it: it is written into the script as given).
    static func shell(_ script: String, in directory: URL, exports: KeyValuePairs<String, String> = [:]) throws
        -> Result
    {
        let file = directory.appendingPathComponent("test.sh")
        var prologue = "set -e\nexport SERVE=\(shellQuoted(try nbdServe))\nexport DIR=\(shellQuoted(directory.path))\n"
        for (name, value) in exports { prologue += "export \(name)=\(value)\n" }
        prologue += "cd \"$DIR\"\n"
        try (prologue + script).write(to: file, atomically: true, encoding: .utf8)
        return try run("/bin/sh", [file.path])
    }

    /// Writes a Python script that uses libnbd and returns the shell command that runs it with
    /// /usr/bin/python3 (which has the `nbd` module) against `$uri`.
    static func pythonCommand(_ script: String, in directory: URL) throws -> String {
        let file = directory.appendingPathComponent("script.py")
        try script.write(to: file, atomically: true, encoding: .utf8)
        return "/usr/bin/python3 \(shellQuoted(file.path))"
    }
}

extension XCTestCase {
    /// Asserts that a run succeeded, showing its output when it did not.
    func assertSucceeded(
        _ result: InteropEnvironment.Result, _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(
            result.status, 0, "\(what) failed:\nstdout:\n\(result.stdout)\nstderr:\n\(result.stderr)", file: file,
            line: line)
    }
}

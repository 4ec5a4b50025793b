import Foundation
import XCTest

/// Runs the real compressors, archivers, mkfs.ext4, cryptsetup and qemu-img to make the files the format
/// filters' tests read. A missing tool skips the test with its Debian package named, unless
/// NBD_INTEROP=required (CI), where it fails.
public enum ToolRunner {
    public static let packages = ["xz": "xz-utils", "gzip": "gzip", "bzip2": "bzip2", "tar": "tar", "lzip": "lzip",
        "mkfs.ext4": "e2fsprogs", "mkfs.ext3": "e2fsprogs", "mkfs.ext2": "e2fsprogs", "debugfs": "e2fsprogs", "e2fsck": "e2fsprogs",
        "cryptsetup": "cryptsetup-bin", "qemu-img": "qemu-utils", "qemu-nbd": "qemu-utils", "nbdkit": "nbdkit",
    ]

    /// The path of `tool`, or a skip (a failure under NBD_INTEROP=required).
    public static func require(_ tool: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        for directory in ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"] {
            let path = "\(directory)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        let message =
            "\(tool) is not installed (Debian package \(packages[tool] ?? tool)); run .ci/run or apt-get install it"
        if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" {
            XCTFail("NBD_INTEROP=required but \(message)", file: file, line: line)
        }
        throw XCTSkip(message)
    }

    /// Runs `tool arguments` in `directory` and fails the test (throwing) when it exits non-zero.
    public static func run(_ tool: String, _ arguments: [String], in directory: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try require(tool))
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        let errors = directory.appendingPathComponent("stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        // A watchdog ends a hung tool, so that the test fails rather than hangs.
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        process.waitUntilExit()
        watchdog.cancel()
        let message = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: errors)
        guard process.terminationStatus == 0 else {
            throw NSError(
                domain: "ToolRunner", code: Int(process.terminationStatus),
                userInfo: [NSLocalizedDescriptionKey: "\(tool) \(arguments.joined(separator: " ")) failed: \(message)"])
        }
    }

    /// `size` bytes of reproducible data that compresses somewhat (runs of repeated bytes between
    /// random ones), with a zero-filled stretch in the middle.
    public static func sampleData(size: Int, seed: UInt64 = 0x9E37_79B9) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        var state = seed
        var index = 0
        while index < size {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let run = Int(state >> 60) + 1
            let value = UInt8(truncatingIfNeeded: state >> 33)
            let inHole = (size / 3..<size / 2).contains(index)
            for offset in index..<min(index + run, size) { bytes[offset] = inHole ? 0 : value }
            index += run
        }
        return bytes
    }

    /// A new empty directory for one test's files.
    public static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nbd-compress-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

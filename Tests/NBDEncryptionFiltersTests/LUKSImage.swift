import Foundation
import NBDCore
import NBDTestSupport
import XCTest

/// LUKSv1 images made by the real tools for the luks filter's tests, and the file system glue
/// around them: cryptsetup (Debian's cryptsetup-bin) formats regular files, qemu-img (qemu-utils)
/// writes and reads their contents through its own LUKS driver. Key slots use 1000 PBKDF2
/// iterations, so unlocking takes milliseconds.
enum LUKSImage {
    static let passphrase = "correct horse"

    /// The path of `tool`, or a skip naming its Debian package (a failure under NBD_INTEROP=required).
    static func require(_ tool: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try ToolRunner.require(tool, file: file, line: line)
    }

    /// Runs `tool arguments` in `directory`, throwing with its standard error when it fails.
    static func run(_ tool: String, _ arguments: [String], in directory: URL) throws {
        try ToolRunner.run(tool, arguments, in: directory)
    }

    /// Formats `name` in `directory` (a new file of `megabytes` MiB) as LUKSv1 with cryptsetup.
    static func cryptsetup(
        _ name: String, megabytes: Int = 4, cipher: String = "aes-xts-plain64", keyBits: Int = 512,
        hash: String = "sha256", in directory: URL
    ) throws -> URL {
        let url = directory.appendingPathComponent(name)
        let keyFile = directory.appendingPathComponent("\(name).key")
        try Data(passphrase.utf8).write(to: keyFile)
        try Data(count: megabytes << 20).write(to: url)
        try run(
            "cryptsetup",
            [
                "luksFormat", "--type", "luks1", "-q", "--key-file", keyFile.path, "--pbkdf-force-iterations", "1000",
                "--cipher", cipher, "--key-size", String(keyBits), "--hash", hash, url.path,
            ], in: directory)
        return url
    }

    /// qemu-img's `--image-opts` for the LUKS image at `url`.
    static func qemuOptions(_ url: URL) -> [String] {
        [
            "--object", "secret,id=sec0,data=\(passphrase)", "--image-opts",
            "driver=luks,key-secret=sec0,file.filename=\(url.path)",
        ]
    }

    /// Writes `plain` into the LUKS image at `url` through qemu-img's LUKS driver.
    static func qemuWrite(_ plain: [UInt8], into url: URL, in directory: URL) throws {
        let source = directory.appendingPathComponent("qemu-source-\(UUID().uuidString).raw")
        try Data(plain).write(to: source)
        defer { try? FileManager.default.removeItem(at: source) }
        try run(
            "qemu-img",
            [
                "convert", "-n", "-f", "raw", source.path, "--object", "secret,id=sec0,data=\(passphrase)",
                "--target-image-opts", "driver=luks,key-secret=sec0,file.filename=\(url.path)",
            ], in: directory)
    }

    /// The decrypted contents of the LUKS image at `url`, as qemu-img's LUKS driver reads them.
    static func qemuRead(_ url: URL, in directory: URL) throws -> [UInt8] {
        let output = directory.appendingPathComponent("qemu-output-\(UUID().uuidString).raw")
        defer { try? FileManager.default.removeItem(at: output) }
        try run("qemu-img", ["convert"] + qemuOptions(url) + ["-O", "raw", output.path], in: directory)
        return Array(try Data(contentsOf: output))
    }

    /// A memory backend holding the file at `url`.
    static func backend(_ url: URL) async throws -> TestMemoryBackend {
        try await backend(Array(try Data(contentsOf: url)))
    }

    /// A memory backend holding `bytes`.
    static func backend(_ bytes: [UInt8]) async throws -> TestMemoryBackend {
        let backend = TestMemoryBackend(size: UInt64(bytes.count))
        if !bytes.isEmpty { try await backend.writeBytes(bytes, at: 0) }
        return backend
    }

    /// Writes the whole of `backend` to `url`.
    static func save(_ backend: TestMemoryBackend, to url: URL) async throws {
        let bytes = try await backend.readBytes(Int(backend.capabilities.size), at: 0)
        try Data(bytes).write(to: url)
    }
}

import Foundation
import XCTest

/// Certificates and pre-shared keys made at test time with GnuTLS's `certtool` and `psktool`
/// (Debian package gnutls-bin), so no private key is ever committed.
///
/// The layout is nbdkit's and libnbd's:
/// - `server/`: `ca-cert.pem`, `server-cert.pem`, `server-key.pem` (the server's `--tls-certificates`);
/// - `client/`: `ca-cert.pem`, `client-cert.pem`, `client-key.pem`, signed by the same CA;
/// - `stranger/`: `ca-cert.pem` of the same CA (so it trusts the server) with a client certificate
///   signed by another CA (refused under `--tls-verify-peer`);
/// - `keys.psk`: a key for `alice`; `wrong.psk`: a different key for `alice`.
public struct TestTLSCredentials: Sendable {
    /// The directory holding everything; remove it with ``remove()``.
    public let root: URL
    public var serverDirectory: String { root.appendingPathComponent("server").path }
    public var clientDirectory: String { root.appendingPathComponent("client").path }
    public var strangerDirectory: String { root.appendingPathComponent("stranger").path }
    public var pskFile: String { root.appendingPathComponent("keys.psk").path }
    public var wrongPSKFile: String { root.appendingPathComponent("wrong.psk").path }
    public static let pskUsername = "alice"

    /// Skips the test when `certtool` or `psktool` is missing, unless `NBD_INTEROP=required`.
    public static func make(file: StaticString = #filePath, line: UInt = #line) throws -> TestTLSCredentials {
        for tool in ["certtool", "psktool"] where !FileManager.default.isExecutableFile(atPath: "/usr/bin/\(tool)") {
            let message = "\(tool) is not installed (Debian package gnutls-bin)"
            if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" {
                XCTFail(message, file: file, line: line)
            }
            throw XCTSkip(message)
        }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("nbd-tls-\(UUID().uuidString)")
        let credentials = TestTLSCredentials(root: root)
        try credentials.create()
        return credentials
    }

    /// Deletes every file.
    public func remove() {
        try? FileManager.default.removeItem(at: root)
    }

    private func create() throws {
        let fileManager = FileManager.default
        for directory in ["work", "server", "client", "stranger"] {
            try fileManager.createDirectory(
                at: root.appendingPathComponent(directory), withIntermediateDirectories: true)
        }
        let work = root.appendingPathComponent("work").path
        func path(_ name: String) -> String { work + "/" + name }
        func template(_ name: String, _ text: String) throws -> String {
            try text.write(toFile: path(name), atomically: true, encoding: .utf8)
            return path(name)
        }
        let caTemplate = try template("ca.info", "cn = NBD test CA\nca\ncert_signing_key\nexpiration_days = 3\n")
        let otherCATemplate = try template(
            "other-ca.info", "cn = Another CA\nca\ncert_signing_key\nexpiration_days = 3\n")
        let serverTemplate = try template(
            "server.info",
            "organization = NBD tests\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 3\n"
        )
        let clientTemplate = try template(
            "client.info",
            "country = GB\nstate = London\nlocality = London\norganization = NBD tests\ncn = client\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 3\n"
        )
        try certtool(["--generate-privkey", "--outfile", path("ca-key.pem")])
        try certtool([
            "--generate-self-signed", "--load-privkey", path("ca-key.pem"), "--template", caTemplate, "--outfile",
            path("ca-cert.pem"),
        ])
        try certtool(["--generate-privkey", "--outfile", path("other-ca-key.pem")])
        try certtool([
            "--generate-self-signed", "--load-privkey", path("other-ca-key.pem"), "--template", otherCATemplate,
            "--outfile", path("other-ca-cert.pem"),
        ])
        for (name, ca, templatePath) in [
            ("server", "ca", serverTemplate), ("client", "ca", clientTemplate),
            ("stranger", "other-ca", clientTemplate),
        ] {
            try certtool(["--generate-privkey", "--outfile", path("\(name)-key.pem")])
            try certtool([
                "--generate-certificate", "--load-ca-certificate", path("\(ca)-cert.pem"), "--load-ca-privkey",
                path("\(ca)-key.pem"), "--load-privkey", path("\(name)-key.pem"), "--template", templatePath,
                "--outfile", path("\(name)-cert.pem"),
            ])
        }
        func install(_ source: String, _ directory: String, _ name: String) throws {
            try fileManager.copyItem(
                atPath: path(source), toPath: root.appendingPathComponent(directory).path + "/" + name)
        }
        try install("ca-cert.pem", "server", "ca-cert.pem")
        try install("server-cert.pem", "server", "server-cert.pem")
        try install("server-key.pem", "server", "server-key.pem")
        try install("ca-cert.pem", "client", "ca-cert.pem")
        try install("client-cert.pem", "client", "client-cert.pem")
        try install("client-key.pem", "client", "client-key.pem")
        try install("ca-cert.pem", "stranger", "ca-cert.pem")
        try install("stranger-cert.pem", "stranger", "client-cert.pem")
        try install("stranger-key.pem", "stranger", "client-key.pem")
        try run("/usr/bin/psktool", ["-u", Self.pskUsername, "-p", pskFile])
        try run("/usr/bin/psktool", ["-u", Self.pskUsername, "-p", wrongPSKFile])
        try fileManager.removeItem(atPath: work)
    }

    private func certtool(_ arguments: [String]) throws {
        try run("/usr/bin/certtool", arguments)
    }

    /// Runs a tool to completion (a watchdog ends it after a minute), throwing when it fails.
    private func run(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let log = root.appendingPathComponent("tool.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        process.waitUntilExit()
        watchdog.cancel()
        guard process.terminationStatus == 0 else {
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw TLSCredentialsError("\(executable) \(arguments.joined(separator: " ")) failed: \(output)")
        }
    }
}

/// A tool that makes test credentials failed.
public struct TLSCredentialsError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

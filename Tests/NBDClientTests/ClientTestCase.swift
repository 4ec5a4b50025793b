import Foundation
import NBDBackends
import NBDClient
import NBDCore
import NBDServer
import NBDTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Starts in-process servers and child NBD servers (nbdkit, qemu-nbd) on Unix sockets in a private
/// directory, and stops them after each test.
class ClientTestCase: XCTestCase {
    private var servers: [NBDServer] = []
    private var children: [ChildServer] = []
    private var directory: URL?

    /// A fresh socket path in this test's directory.
    func socketPath(_ name: String = "socket") throws -> String {
        if directory == nil {
            directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("nbd-client-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory!, withIntermediateDirectories: true)
        }
        return directory!.appendingPathComponent("\(name)-\(servers.count + children.count)").path
    }

    /// This package's server over a memory export of `size` bytes.
    func startMemoryServer<Provider: BackendProvider>(
        _ provider: Provider, configuration: ServerConfiguration = ServerConfiguration()
    ) throws -> String {
        let server = NBDServer(provider: provider, configuration: configuration)
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        servers.append(server)
        return path
    }

    /// Starts `executable` with `arguments` (which must make it listen on `path`) and waits, bounded,
    /// until the socket accepts a connection.
    func startChild(_ executable: String, _ arguments: [String], socket path: String) async throws -> Process {
        do {
            let child = try await ChildServer.start(executable, arguments, socket: path)
            children.append(child)
            return child.process
        } catch let error as ChildServer.DidNotStart {
            throw XCTSkip(error.description)
        }
    }

    /// Starts `nbdkit -f -U PATH ARGS` and returns the socket path.
    func startNbdkit(_ arguments: [String]) async throws -> (path: String, process: Process) {
        try InteropRequirement.require("nbdkit")
        let path = try socketPath("nbdkit")
        let process = try await startChild(
            InteropRequirement.path(of: "nbdkit")!, ["-f", "-U", path] + arguments, socket: path)
        return (path, process)
    }

    /// Starts `qemu-nbd` serving a fresh raw image of `size` bytes and returns the socket path.
    func startQemuNbd(size: Int, extraArguments: [String] = []) async throws -> String {
        try InteropRequirement.require("qemu-nbd")
        let path = try socketPath("qemu")
        let image = path + ".img"
        _ = FileManager.default.createFile(atPath: image, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
        _ = try await startChild(
            InteropRequirement.path(of: "qemu-nbd")!,
            ["-k", path, "-f", "raw", "-t", "--cache=writeback"] + extraArguments + [image], socket: path)
        return path
    }

    override func tearDown() async throws {
        for server in servers { await server.shutdown() }
        servers = []
        for child in children { child.stop() }
        children = []
        if let directory { try? FileManager.default.removeItem(at: directory) }
        directory = nil
    }
}

/// Skips (or, under `NBD_INTEROP=required`, fails) when a tool is missing.
enum InteropRequirement {
    static func path(of tool: String) -> String? {
        for directory in ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"] {
            let candidate = "\(directory)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func require(_ tool: String, file: StaticString = #filePath, line: UInt = #line) throws {
        guard path(of: tool) == nil else { return }
        let message = "\(tool) is not installed"
        if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" {
            XCTFail("NBD_INTEROP=required but \(message)", file: file, line: line)
        }
        throw XCTSkip(message)
    }
}

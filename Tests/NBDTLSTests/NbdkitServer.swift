import Foundation
import NBDTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A real `nbdkit -f --exit-with-parent -U SOCKET` in a private directory, for the tests that drive
/// NBDTLSClient's client side against it. Killed with SIGKILL by ``stop()``, so it cannot hold a test up.
final class NbdkitServer {
    /// nbdkit's path, or `nil` when it is not installed.
    static var path: String? {
        ["/usr/sbin/nbdkit", "/usr/bin/nbdkit"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Skips (or fails, under `NBD_INTEROP=required`) when nbdkit is not installed.
    static func require() throws {
        guard path == nil else { return }
        let message = "nbdkit is not installed (Debian package nbdkit)"
        if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" { XCTFail(message) }
        throw XCTSkip(message)
    }

    let socket: String
    private let directory: String
    private let process: Process

    /// Starts nbdkit with `arguments` (options, then the plugin and its parameters) and waits,
    /// bounded, until it accepts connections. Ready means its `-P` pid file exists: nbdkit writes
    /// it once it listens. The socket file alone is not enough: it appears at `bind`, before
    /// `listen`, and a client connecting in between is refused (seen under ThreadSanitizer on a
    /// loaded machine).
    init(_ arguments: [String]) async throws {
        var template = Array("/tmp/nbd-tls-nbdkit.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw XCTSkip("mkdtemp failed")
        }
        directory = String(cString: made)
        socket = directory + "/socket"
        let pidFile = directory + "/nbdkit.pid"
        process = Process()
        process.executableURL = URL(fileURLWithPath: try XCTUnwrap(Self.path))
        process.arguments = ["-f", "--exit-with-parent", "-P", pidFile, "-U", socket] + arguments
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let process = self.process
        let ready = await waitUntil("nbdkit to listen on \(socket)") {
            let written = (try? String(contentsOfFile: pidFile, encoding: .utf8))?.hasSuffix("\n") ?? false
            return written || !process.isRunning
        }
        guard ready, process.isRunning else {
            stop()
            XCTFail("nbdkit \(arguments) did not start")
            throw XCTSkip("nbdkit did not start")
        }
    }

    /// Kills nbdkit and removes its directory. Calling it again does nothing.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

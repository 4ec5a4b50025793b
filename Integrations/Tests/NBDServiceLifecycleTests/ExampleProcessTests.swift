import Foundation
import IntegrationsTestSupport
import NBDClient
import NBDCore
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The example executable, run as a child process: a real SIGTERM reaches the `ServiceGroup`, the
/// server drains and the program exits cleanly.
final class ExampleProcessTests: XCTestCase {
    /// The example, built beside this test bundle by `swift build` / `swift test`. On Linux the
    /// bundle's URL is the build directory; elsewhere it is the `.xctest` bundle inside it.
    private var examplePath: String {
        let bundle = Bundle(for: Self.self).bundleURL
        let candidates = [bundle, bundle.deletingLastPathComponent()].map {
            $0.appendingPathComponent("nbd-integrations-example").path
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    func testSIGTERMStopsTheExampleGracefullyWithAClientConnected() async throws {
        guard FileManager.default.isExecutableFile(atPath: examplePath) else {
            XCTFail("\(examplePath) is missing: build the package with `swift build --package-path Integrations` first")
            return
        }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let socket = directory.socket()
        let output = directory.path + "/output.log"
        guard FileManager.default.createFile(atPath: output, contents: nil) else {
            throw TestSetupError("cannot create \(output)")
        }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: examplePath)
        process.arguments = [socket]
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardOutput = log
        process.standardError = log
        let exited = ProcessExit()
        process.terminationHandler = { exited.deliver($0.terminationStatus) }
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // The socket file appears at bind(), before listen(); the server logs "listening on" after.
        let listening = await waitUntil("the example to listen on \(socket)") {
            ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("listening on unix:\(socket)")
        }
        guard listening else { return }
        let connection = try await connect(socket)
        try await withBoundedWait("a write and a read") {
            try await connection.write(Array("hello".utf8), at: 0)
            let back = try await connection.read(count: 5, at: 0)
            XCTAssertEqual(back, Array("hello".utf8))
        }

        XCTAssertEqual(kill(process.processIdentifier, SIGTERM), 0)
        let status = try await withBoundedWait("the example to exit after SIGTERM") { await exited.value }
        XCTAssertEqual(status, 0, "a clean exit: \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
        XCTAssertFalse(fileExists(socket), "the listener was closed")
        let text = try String(contentsOfFile: output, encoding: .utf8)
        for line in ["Signal caught", "nbd.event=connection-closed", "server stopped", "stopped"] {
            XCTAssertTrue(text.contains(line), "the log mentions '\(line)':\n\(text)")
        }
        await connection.disconnect()
    }
}

/// A child's exit status, delivered once from `Process.terminationHandler` and awaited once.
private final class ProcessExit: Sendable {
    private let status = Mutex<(value: Int32?, waiter: CheckedContinuation<Int32, Never>?)>((nil, nil))

    func deliver(_ value: Int32) {
        let waiter = status.withLock { state -> CheckedContinuation<Int32, Never>? in
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    var value: Int32 {
        get async {
            await withCheckedContinuation { continuation in
                let ready = status.withLock { state -> Int32? in
                    if let value = state.value { return value }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}

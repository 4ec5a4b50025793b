import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// An NBD server a test runs as a child process (nbdkit, qemu-nbd) on a Unix socket: started, waited
/// for (bounded) until the socket accepts a connection, and stopped by its PID.
public final class ChildServer {
    /// The running child.
    public let process: Process
    /// Signalled by the termination handler: a handler rather than `waitUntilExit`, whose run-loop
    /// wait leaks a weak reference under LeakSanitizer.
    private let exited: DispatchSemaphore

    private init(process: Process, exited: DispatchSemaphore) {
        self.process = process
        self.exited = exited
    }

    /// The child exited, or its socket never accepted a connection within ``TestWait/limit`` (that
    /// wait has failed the test already); it has been stopped.
    public struct DidNotStart: Error, CustomStringConvertible {
        public let executable: String
        /// The exit status, or -1 when it was still running and had to be stopped.
        public let exitStatus: Int32
        public var description: String { "\(executable) did not start (exit status \(exitStatus))" }
    }

    /// Starts `executable` with `arguments`, which must make it listen on `socket`, and waits until
    /// the socket accepts a connection or the child exits.
    public static func start(
        _ executable: String, _ arguments: [String], socket: String, file: StaticString = #filePath, line: UInt = #line
    ) async throws -> ChildServer {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        let child = ChildServer(process: process, exited: exited)
        let ready = await waitUntil("\(executable) to listen on \(socket)", file: file, line: line) {
            !process.isRunning || unixSocketAcceptsConnections(socket)
        }
        guard ready, process.isRunning else {
            let status = process.isRunning ? -1 : process.terminationStatus
            child.stop()
            throw DidNotStart(executable: executable, exitStatus: status)
        }
        return child
    }

    /// Stops the child with SIGKILL (children inherit a signal mask in which SIGTERM may be blocked)
    /// and waits, bounded, until it has exited.
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        _ = exited.waitOrFail("child \(process.processIdentifier) to exit")
    }
}

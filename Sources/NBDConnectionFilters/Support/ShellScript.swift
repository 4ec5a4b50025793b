import Dispatch
import Foundation
import NBDCore

/// Runs a shell command with `/bin/sh -c`, as nbdkit runs its filters' scripts, off the cooperative
/// pool (the wait happens on a Dispatch thread).
enum ShellScript {
    /// What a script did: its exit status (128 + N when killed by signal N) and standard output.
    struct Outcome: Sendable {
        var status: Int32
        var output: [UInt8]
    }

    /// Runs `command` with `environment` added to the server's and returns how it ended.
    static func run(_ command: String, environment: [String: String] = [:]) async -> Result<Outcome, NBDError> {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: runBlocking(command, environment: environment))
            }
        }
    }

    /// Runs `command` and waits on the calling thread.
    static func runBlocking(_ command: String, environment: [String: String] = [:]) -> Result<Outcome, NBDError> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        do {
            try process.run()
        } catch {
            return .failure(NBDError(.ioError, "cannot run /bin/sh for the script '\(command)': \(error)"))
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let status =
            process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return .success(Outcome(status: status, output: Array(output)))
    }
}

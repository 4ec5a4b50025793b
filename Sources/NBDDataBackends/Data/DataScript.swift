import Foundation
import Glibc
import NBDCore

/// Runs a `<(SCRIPT)` of a data string with `/bin/sh -c` and collects what it writes to its
/// standard output, as nbdkit's data plugin does when the server starts.
enum DataScript {
    /// The most a script may write when it is not sliced (`<(SCRIPT)[:LEN]` reads only LEN bytes).
    static let maximumOutput: UInt64 = 1 << 30

    /// The script's output; at most `limit` bytes, after which the script is stopped.
    ///
    /// - Throws: `NBDError.Code.invalidArgument` if the shell cannot start, the script fails (exits
    ///   with a status other than 0 before `limit` bytes) or writes more than 1 GiB unsliced.
    static func run(_ script: String, limit: UInt64?) throws(NBDError) -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw NBDError(.invalidArgument, "data: <(\(script)): cannot start /bin/sh: \(error)")
        }
        try? pipe.fileHandleForWriting.close()
        let descriptor = pipe.fileHandleForReading.fileDescriptor
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var stoppedEarly = false
        while true {
            var wanted = chunk.count
            if let limit {
                let remaining = limit - UInt64(output.count)
                if remaining == 0 {
                    stoppedEarly = true
                    break
                }
                wanted = Int(min(UInt64(wanted), remaining))
            }
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, wanted) }
            if count < 0 {
                if errno == EINTR { continue }
                break
            }
            if count == 0 { break }
            output.append(contentsOf: chunk[0..<count])
            if limit == nil && UInt64(output.count) > maximumOutput {
                stoppedEarly = true
                break
            }
        }
        // Closing the pipe ends a script still writing (SIGPIPE); terminate ends one that is not.
        try? pipe.fileHandleForReading.close()
        if stoppedEarly && process.isRunning { process.terminate() }
        process.waitUntilExit()
        if limit == nil && UInt64(output.count) > maximumOutput {
            throw NBDError(
                .invalidArgument, "data: <(\(script)) wrote more than 1 GiB; take a slice such as <(...)[:1M]")
        }
        if !stoppedEarly && (process.terminationReason != .exit || process.terminationStatus != 0) {
            throw NBDError(
                .invalidArgument, "data: <(\(script)) failed (exit status \(process.terminationStatus))")
        }
        return output
    }
}

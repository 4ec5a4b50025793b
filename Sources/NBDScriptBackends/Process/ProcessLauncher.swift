import CSpawnShim
import Glibc
import NBDCore

/// Runs one script to completion: starts it with `posix_spawn`, feeds its standard input, collects
/// its standard output and error, and reaps it. Blocking: call it from a thread of its own (see
/// ``BlockingThread``), never from the cooperative pool.
///
/// The child gets only its three standard streams (every other descriptor is closed, see
/// `cspawn_start`), an empty signal mask and default signal actions. Nothing is bounded by time,
/// as in nbdkit: a script that never ends holds its request until it does.
package enum ProcessLauncher {
    /// The most standard error kept: the errno name and the first line of a message are at the start.
    static let errorOutputLimit = 64 << 10

    /// Runs `path` with `arguments` (which start with the `argv[0]` to pass) and `environment`.
    ///
    /// A file that is not an executable format (a script without `#!`) is run with `/bin/sh`, as
    /// `execvp` does for nbdkit. Standard output beyond `outputLimit` bytes is read and dropped
    /// (``ScriptRun/outputOverflowed``), so a runaway script cannot exhaust memory.
    ///
    /// - Throws: ``NBDError`` with `EIO` when no process could be started.
    package static func run(
        path: String, arguments: [String], environment: [String], input: UnsafeRawBufferPointer?, outputLimit: Int
    ) throws(NBDError) -> ScriptRun {
        var inputPipe: [Int32] = [-1, -1]
        var outputPipe: [Int32] = [-1, -1]
        var errorPipe: [Int32] = [-1, -1]
        defer {
            for fd in inputPipe + outputPipe + errorPipe where fd >= 0 { close(fd) }
        }
        guard cspawn_pipe(&inputPipe) == 0, cspawn_pipe(&outputPipe) == 0, cspawn_pipe(&errorPipe) == 0 else {
            throw NBDError(errno: errno, "\(path): cannot create a pipe")
        }
        var pid: pid_t = 0
        var status = spawn(
            &pid, path: path, arguments: arguments, environment: environment,
            streams: (inputPipe[0], outputPipe[1], errorPipe[1]))
        if status == ENOEXEC {
            status = spawn(
                &pid, path: "/bin/sh", arguments: ["/bin/sh", path] + arguments.dropFirst(),
                environment: environment, streams: (inputPipe[0], outputPipe[1], errorPipe[1]))
        }
        guard status == 0 else { throw NBDError(errno: status, "\(path): cannot run the script") }
        // The child holds its own copies; the parent keeps only its ends, so end of file is seen
        // when the child (and anything it started that kept the streams) is done.
        for fd in [inputPipe[0], outputPipe[1], errorPipe[1]] { close(fd) }
        inputPipe[0] = -1
        outputPipe[1] = -1
        errorPipe[1] = -1

        var run = ScriptRun(termination: .exited(0), output: [], outputOverflowed: false, errorOutput: [])
        if let input, input.count > 0 {
            _ = fcntl(inputPipe[1], F_SETFL, fcntl(inputPipe[1], F_GETFL) | O_NONBLOCK)
            exchange(
                input: input, inputFD: &inputPipe[1], outputFD: &outputPipe[0], errorFD: &errorPipe[0],
                outputLimit: outputLimit, run: &run)
        } else {
            // Standard input reaches end of file at once: a method that reads it gets nothing.
            close(inputPipe[1])
            inputPipe[1] = -1
            exchange(
                input: nil, inputFD: &inputPipe[1], outputFD: &outputPipe[0], errorFD: &errorPipe[0],
                outputLimit: outputLimit, run: &run)
        }
        run.termination = reap(pid)
        return run
    }

    private static func spawn(
        _ pid: inout pid_t, path: String, arguments: [String], environment: [String],
        streams: (Int32, Int32, Int32)
    ) -> Int32 {
        withCStrings(arguments) { argv in
            withCStrings(environment) { envp in
                cspawn_start(&pid, path, argv, envp, streams.0, streams.1, streams.2)
            }
        }
    }

    /// Calls `body` with a NULL-terminated array of C strings.
    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R)
        -> R
    {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Writes `input` and reads both outputs until the child closes them, with `poll`, so that a
    /// child blocked writing a full pipe is never waited on while it waits on us.
    private static func exchange(
        input: UnsafeRawBufferPointer?, inputFD: inout Int32, outputFD: inout Int32, errorFD: inout Int32,
        outputLimit: Int, run: inout ScriptRun
    ) {
        var written = 0
        // A script may exit without reading what it was given (nbdkit allows it). The write then
        // fails with EPIPE and raises SIGPIPE on this thread: blocked here and taken back at the end,
        // so the process is not killed whatever its SIGPIPE disposition is.
        var pipeSignal = BrokenPipeSignalBlock()
        defer { pipeSignal.end() }
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        if outputLimit < 1 << 20 { run.output.reserveCapacity(outputLimit) }
        while outputFD >= 0 || errorFD >= 0 {
            var fds = [
                pollfd(fd: inputFD, events: Int16(POLLOUT), revents: 0),
                pollfd(fd: outputFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: errorFD, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 3, -1)
            if ready < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                break
            }
            if inputFD >= 0, fds[0].revents != 0, let input {
                let count = write(inputFD, input.baseAddress! + written, input.count - written)
                if count > 0 {
                    written += count
                } else if count < 0 && (errno == EAGAIN || errno == EINTR) {
                    // Not ready after all; poll again.
                } else {
                    if errno == EPIPE { pipeSignal.raised = true }
                    written = input.count
                }
                if written == input.count {
                    close(inputFD)
                    inputFD = -1
                }
            }
            if outputFD >= 0, fds[1].revents != 0 {
                let count = chunk.withUnsafeMutableBytes { read(outputFD, $0.baseAddress, $0.count) }
                if count > 0 {
                    let room = max(0, outputLimit - run.output.count)
                    run.output.append(contentsOf: chunk[0..<min(count, room)])
                    if count > room { run.outputOverflowed = true }
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(outputFD)
                    outputFD = -1
                }
            }
            if errorFD >= 0, fds[2].revents != 0 {
                let count = chunk.withUnsafeMutableBytes { read(errorFD, $0.baseAddress, $0.count) }
                if count > 0 {
                    let room = max(0, errorOutputLimit - run.errorOutput.count)
                    run.errorOutput.append(contentsOf: chunk[0..<min(count, room)])
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(errorFD)
                    errorFD = -1
                }
            }
        }
    }

    /// Waits for the child, so no zombie is left, and says how it ended.
    private static func reap(_ pid: pid_t) -> ScriptTermination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return .signalled(0) }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
        if status & 0x7f == 0 { return .exited((status >> 8) & 0xff) }
        return .signalled(status & 0x7f)
    }
}

import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// Runs the `--run` command with `/bin/sh -c` and reports its exit status.
enum RunCommand {
    /// Starts `command` with `environment` added to this process's environment (a `nil` value
    /// unsets the variable). Returns its pid.
    static func spawn(_ command: String, environment: [String: String?]) throws(ServeFailure) -> pid_t {
        for (key, value) in environment {
            if let value { setenv(key, value, 1) } else { unsetenv(key) }
        }
        var pid = pid_t()
        let arguments = ["/bin/sh", "-c", command]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        let result = posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ)
        guard result == 0 else {
            throw ServeFailure("cannot run '\(command)': \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// Waits for `pid` on a thread of its own and calls `completion` with its exit status (128 +
    /// the signal number if a signal ended it).
    static func wait(for pid: pid_t, completion: @escaping @Sendable (Int32) -> Void) {
        let thread = DispatchQueue(label: "nbd-serve.run-wait")
        thread.async {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 {
                if errno != EINTR {
                    completion(1)
                    return
                }
            }
            // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
            let signal = status & 0x7f
            completion(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
        }
    }
}

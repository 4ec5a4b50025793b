import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// One `exit-when-*` event of nbdkit's exitwhen filter.
public struct ExitEvent: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Sendable, Hashable {
        case fileCreated(String)
        case fileDeleted(String)
        case pipeClosed(Int32)
        case processExits(Int32)
        case script(String)
    }

    let kind: Kind

    /// `exit-when-file-created=PATH`: the event happens when `path` exists.
    public static func fileCreated(_ path: String) -> ExitEvent { ExitEvent(kind: .fileCreated(path)) }
    /// `exit-when-file-deleted=PATH`: the event happens when `path` does not exist.
    public static func fileDeleted(_ path: String) -> ExitEvent { ExitEvent(kind: .fileDeleted(path)) }
    /// `exit-when-pipe-closed=FD`: the event happens when the write end of the pipe read on `descriptor` closes.
    public static func pipeClosed(_ descriptor: Int32) -> ExitEvent { ExitEvent(kind: .pipeClosed(descriptor)) }
    /// `exit-when-process-exits=PID`: the event happens when process `pid` no longer exists.
    public static func processExits(_ pid: Int32) -> ExitEvent { ExitEvent(kind: .processExits(pid)) }
    /// `exit-when-script=SCRIPT`: the event happens when the shell command exits with status 88.
    public static func script(_ command: String) -> ExitEvent { ExitEvent(kind: .script(command)) }

    public var description: String {
        switch kind {
        case .fileCreated(let path): return "exit-when-file-created=\(path)"
        case .fileDeleted(let path): return "exit-when-file-deleted=\(path)"
        case .pipeClosed(let descriptor): return "exit-when-pipe-closed=\(descriptor)"
        case .processExits(let pid): return "exit-when-process-exits=\(pid)"
        case .script(let command): return "exit-when-script=\(command)"
        }
    }

    /// Whether the event has happened. May block (a script runs to its end); `report` receives a
    /// script's failure (status 1 to 87), which is not the event.
    func hasHappened(report: (String) -> Void) -> Bool {
        switch kind {
        case .fileCreated(let path): return access(path, F_OK) == 0
        case .fileDeleted(let path): return access(path, F_OK) != 0 && errno == ENOENT
        case .pipeClosed(let descriptor):
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 0) == 1 else { return false }
            // Hang-up is the write end closing; data alone is not the event (the filter reads nothing).
            return entry.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0
        case .processExits(let pid):
            return kill(pid, 0) == -1 && errno == ESRCH
        case .script(let command):
            switch ShellScript.runBlocking(command) {
            case .failure(let error):
                report("exitwhen: \(error.message)")
                return false
            case .success(let outcome):
                if outcome.status == 88 { return true }
                if outcome.status != 0 {
                    report("exitwhen: exit-when-script=\(command) exited with status \(outcome.status)")
                }
                return false
            }
        }
    }
}

import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The `statsfile`: opened (created, truncated unless appending) when the layer is created, so that a
/// bad path fails before the server listens, as nbdkit opens it in `get_ready`; written once at shutdown.
public final class StatsFile: Sendable {
    /// The absolute path of the file.
    public let path: String
    /// Whether reports are appended rather than replacing the file's contents.
    public let appends: Bool
    /// The open descriptor, or -1 once the report was written.
    private let descriptor: LockedValue<Int32>

    /// Opens `path` (made absolute against the current directory) for writing, with mode 0666 before
    /// the umask, creating it, and truncating it unless `append` is set.
    public init(path: String, append: Bool = false) throws(NBDError) {
        guard !path.isEmpty else {
            throw NBDError(.invalidArgument, "statsfile=: the path is empty; give the file the report is written to")
        }
        let absolute = Self.absolutePath(path)
        let flags = O_CLOEXEC | O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC)
        let fd = open(absolute, flags, 0o666)
        if fd < 0 {
            throw NBDError(errno: errno, "open: \(absolute)")
        }
        self.path = absolute
        self.appends = append
        self.descriptor = LockedValue(fd)
    }

    deinit {
        descriptor.withLock { fd in
            if fd >= 0 { close(fd) }
        }
    }

    /// `path` made absolute against the current directory, as `nbdkit_absolute_path` does (no
    /// normalisation of `.` or `..`).
    static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let cwd: String? = buffer.withUnsafeMutableBufferPointer { pointer in
            guard getcwd(pointer.baseAddress, pointer.count) != nil else { return nil }
            return String(cString: pointer.baseAddress!)
        }
        guard let cwd else { return path }
        return cwd.hasSuffix("/") ? cwd + path : cwd + "/" + path
    }

    /// Writes `text` and closes the file. Later calls do nothing: nbdkit writes the report once.
    ///
    /// This is a blocking write on the caller's thread; it runs once, at shutdown, after every
    /// connection closed, so it stalls no request.
    public func writeOnce(_ text: String) throws(NBDError) {
        let result: Int32 = descriptor.withLock { fd in
            guard fd >= 0 else { return 0 }
            defer {
                close(fd)
                fd = -1
            }
            return Self.writeAll(text, to: fd)
        }
        if result != 0 { throw NBDError(errno: result, "write: \(path)") }
    }
}

extension StatsFile {
    /// Replaces the file at `path` with `text` atomically: the text goes to a hidden temporary file in
    /// the same directory (`.NAME.PID.tmp`, which node_exporter's textfile collector ignores, as it
    /// reads only `*.prom`), which is then renamed over `path`. A reader sees the old file or the new
    /// one, never half of one.
    public static func replace(_ path: String, with text: String) throws(NBDError) {
        let absolute = absolutePath(path)
        let slash = absolute.lastIndex(of: "/")!
        let directory = absolute[...slash]
        let name = absolute[absolute.index(after: slash)...]
        let temporary = "\(directory).\(name).\(getpid()).tmp"
        let fd = open(temporary, O_CLOEXEC | O_WRONLY | O_CREAT | O_TRUNC, 0o666)
        if fd < 0 { throw NBDError(errno: errno, "open: \(temporary)") }
        var failure = writeAll(text, to: fd)
        if close(fd) != 0, failure == 0 { failure = errno }
        if failure == 0, rename(temporary, absolute) != 0 { failure = errno }
        if failure != 0 {
            unlink(temporary)
            throw NBDError(errno: failure, "write: \(absolute)")
        }
    }
}

extension StatsFile {
    /// Writes all of `text` to `fd`, retrying after signals; returns 0, or the errno of the write that
    /// failed.
    static func writeAll(_ text: String, to fd: Int32) -> Int32 {
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { raw in write(fd, raw.baseAddress! + done, raw.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return 0
    }
}

/// Writes a diagnostic to standard error, for failures that have no caller to return to.
func reportToStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

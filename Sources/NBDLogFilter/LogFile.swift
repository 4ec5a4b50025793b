import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The file the log filter writes: opened once at start-up, shared by every connection, written one
/// whole line per `write(2)`.
///
/// There is no lock in user space. The file is opened with `O_APPEND`, so each line lands at the end
/// of the file in one piece even when several connections write at once (the kernel serializes
/// appends to a file; nbdkit instead holds a stdio lock across each line's formatting and write).
/// Formatting happens in the writing request's own buffer, so connections never wait for each
/// other's formatting.
public final class LogFile: Sendable {
    /// The path given as `logfile`.
    public let path: String
    private let descriptor: Int32
    private let connections = Atomic<UInt64>(0)
    private let failedWrites = Atomic<Int>(0)

    /// Opens `path` for writing, truncating it unless `append` (nbdkit's `logappend`).
    ///
    /// - Throws: an error naming `logfile` and the system's reason when the file cannot be opened, so
    ///   an unwritable log is a start-up failure rather than a silent loss.
    public init(path: String, append: Bool) throws(NBDError) {
        let flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC)
        let descriptor = Glibc.open(path, flags, 0o666)
        guard descriptor >= 0 else {
            throw NBDError(errno: errno, "logfile=\(path): cannot open the log for writing")
        }
        self.path = path
        self.descriptor = descriptor
    }

    deinit {
        Glibc.close(descriptor)
    }

    /// A new connection number: 1 for the first connection of this log, as nbdkit counts.
    func nextConnection() -> UInt64 {
        connections.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// How many lines could not be written (a full disk, say). Logging never fails a request.
    public var failedWriteCount: Int { failedWrites.load(ordering: .relaxed) }

    /// Writes `line`, which ends with a newline, in one system call where the kernel allows.
    func write(_ line: UnsafeRawBufferPointer) {
        var done = 0
        while done < line.count {
            let written = Glibc.write(descriptor, line.baseAddress! + done, line.count - done)
            if written < 0 {
                if errno == EINTR { continue }
                failedWrites.wrappingAdd(1, ordering: .relaxed)
                return
            }
            done += written
        }
    }
}

import Glibc
import NBDCore
import Synchronization

/// The open file or block device of one file export, shared by every connection.
///
/// One descriptor serves all connections: `pread` and `pwrite` take their own offsets, so requests do
/// not share a file position, and the OS page cache behind the descriptor is one cache for everyone.
/// The descriptor closes when the provider and every backend it opened are gone.
///
/// The calls block the calling thread. Reads and writes that hit the page cache take about as long
/// as a memory copy; flushes and FUA writes wait for the disk, which is why the backend lists them as
/// slow operations for the server to run elsewhere.
final class FileStore: Sendable {
    /// The largest zero write issued at once when zeroing must write.
    static let zeroChunkSize = 1 << 20
    /// The most extents one block status reply describes; the client asks again for the rest.
    static let maximumExtents = 4096

    let descriptor: OwnedDescriptor
    let path: String
    let size: UInt64
    let isBlockDevice: Bool
    let isReadOnly: Bool
    /// Whether the storage looks rotational (from sysfs), for `NBD_FLAG_ROTATIONAL`.
    let isRotational: Bool

    /// Cleared the first time the kernel refuses `FALLOC_FL_PUNCH_HOLE`, so later zeroes and trims do
    /// not ask again.
    let canPunchHole = Atomic<Bool>(true)
    /// Cleared the first time the kernel refuses `FALLOC_FL_ZERO_RANGE`.
    let canZeroRange = Atomic<Bool>(true)
    /// Whether FUA writes use `pwritev2(RWF_DSYNC)`; cleared when the kernel or glibc lacks it, after
    /// which FUA writes are a write and an `fdatasync`.
    let canWriteDSync = Atomic<Bool>(LinuxFileCalls.pwritev2 != nil)
    /// How many `fdatasync` calls were made: lets tests see which FUA path ran.
    let syncCount = Atomic<Int>(0)

    /// Opens `path` for reading and, unless `readOnly`, writing.
    init(path: String, readOnly: Bool) throws(NBDError) {
        var raw: Int32
        repeat {
            raw = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        } while raw < 0 && errno == EINTR
        guard raw >= 0 else { throw NBDError(errno: errno, "cannot open \(path)") }
        // Owned from here on: every throw below closes it.
        let descriptor = OwnedDescriptor(taking: raw)

        var info = stat()
        guard fstat(raw, &info) == 0 else { throw NBDError(errno: errno, "cannot stat \(path)") }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            size = UInt64(info.st_size)
            isBlockDevice = false
            isRotational = Self.readRotational(device: info.st_dev)
        case S_IFBLK:
            // A block device's st_size is 0; seeking to its end gives its size without the
            // BLKGETSIZE64 ioctl.
            let end = lseek(raw, 0, SEEK_END)
            guard end >= 0 else { throw NBDError(errno: errno, "cannot find the size of block device \(path)") }
            size = UInt64(end)
            isBlockDevice = true
            isRotational = Self.readRotational(device: info.st_rdev)
        default:
            throw NBDError(.invalidArgument, "cannot serve \(path): it is neither a regular file nor a block device")
        }
        self.descriptor = descriptor
        self.path = path
        self.isReadOnly = readOnly
    }

    private var fd: Int32 { descriptor.rawValue }

    // MARK: - Reads and writes

    /// Reads exactly `buffer.count` bytes at `offset`, retrying short reads and interruptions.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(NBDError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let result = pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if result > 0 {
                done += result
            } else if result == 0 {
                throw NBDError(
                    .ioError,
                    "read of \(buffer.count) bytes at offset \(offset) from \(path) reached the end of the file; "
                        + "was it truncated after the export opened?")
            } else {
                let code = errno
                guard code == EINTR else {
                    throw NBDError(errno: code, "read of \(buffer.count) bytes at offset \(offset) from \(path)")
                }
            }
        }
    }

    /// Writes all of `data` at `offset`, retrying short writes and interruptions.
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws(NBDError) {
        try checkWritable("write")
        try writeAll(data, at: offset)
    }

    /// Writes `data` so that it is durable when this returns: with `RWF_DSYNC` when the kernel has it
    /// (one system call, and the disk flushes only this write), otherwise with a write and
    /// `fdatasync`.
    func writeDurably(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws(NBDError) {
        try checkWritable("write")
        guard let base = data.baseAddress else { return }
        if canWriteDSync.load(ordering: .relaxed), let pwritev2 = LinuxFileCalls.pwritev2 {
            var done = 0
            while done < data.count {
                var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: base + done), iov_len: data.count - done)
                let result = pwritev2(fd, &vector, 1, off_t(offset) + off_t(done), LinuxFileCalls.rwfDSync)
                if result > 0 {
                    done += result
                    continue
                }
                let code = result == 0 ? EIO : errno
                switch code {
                case EINTR:
                    continue
                case EOPNOTSUPP, ENOSYS:
                    // Kernels before 4.7 reject the flag, before 4.6 the call. Remember, and finish
                    // this write the portable way.
                    canWriteDSync.store(false, ordering: .relaxed)
                    try writeAll(UnsafeRawBufferPointer(rebasing: data[done...]), at: offset + UInt64(done))
                    try sync("a FUA write")
                    return
                default:
                    throw NBDError(errno: code, "FUA write of \(data.count) bytes at offset \(offset) to \(path)")
                }
            }
            return
        }
        try writeAll(data, at: offset)
        try sync("a FUA write")
    }

    private func writeAll(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws(NBDError) {
        guard let base = data.baseAddress else { return }
        var done = 0
        while done < data.count {
            let result = pwrite(fd, base + done, data.count - done, off_t(offset) + off_t(done))
            if result > 0 {
                done += result
            } else {
                // pwrite returns 0 only if it cannot make progress; call that an I/O error rather
                // than loop forever.
                let code = result == 0 ? EIO : errno
                guard code == EINTR else {
                    throw NBDError(errno: code, "write of \(data.count) bytes at offset \(offset) to \(path)")
                }
            }
        }
    }

    /// `fdatasync`: makes completed writes durable (data, and the metadata needed to read it back).
    func sync(_ reason: String = "a flush") throws(NBDError) {
        syncCount.wrappingAdd(1, ordering: .relaxed)
        while fdatasync(fd) != 0 {
            let code = errno
            // Retrying after EIO would report success for data the kernel already dropped, so only
            // an interruption is retried.
            guard code == EINTR else { throw NBDError(errno: code, "fdatasync of \(path) for \(reason)") }
        }
    }

    // MARK: - Zero and trim

    /// Makes `count` bytes at `offset` read as zeroes, as fast as the file system allows: punching a
    /// hole (unless `NO_HOLE`), else zeroing the range in place, else (unless `FAST_ZERO`) writing
    /// zeroes.
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) throws(NBDError) {
        try checkWritable("zero")
        var done = false
        if !flags.contains(.noHole) {
            done = try fallocate(.punchHole, count: count, at: offset, for: "zero")
        }
        // On a block device ZERO_RANGE may fall back to writing zeroes in the kernel (only punch
        // hole is issued with BLKDEV_ZERO_NOFALLBACK), so it is not fast enough for FAST_ZERO there.
        if !done && !(isBlockDevice && flags.contains(.fastZero)) {
            done = try fallocate(.zeroRange, count: count, at: offset, for: "zero")
        }
        if !done {
            guard !flags.contains(.fastZero) else {
                throw NBDError(
                    .notSupported,
                    "fast zero of \(count) bytes at offset \(offset) is not possible: \(path) supports neither "
                        + "punching holes nor zeroing ranges, so zeroing would mean writing")
            }
            try writeZeroes(count: count, at: offset)
        }
        if flags.contains(.fua) {
            try sync("a FUA zero")
        }
    }

    /// Deallocates `count` bytes at `offset` by punching a hole. Trim is a hint, so storage that
    /// cannot punch holes ignores it.
    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) throws(NBDError) {
        try checkWritable("trim")
        // The NBD spec lets an ignored trim ignore FUA too.
        if try fallocate(.punchHole, count: count, at: offset, for: "trim"), flags.contains(.fua) {
            try sync("a FUA trim")
        }
    }

    enum AllocationChange {
        case punchHole
        case zeroRange
    }

    /// Tries one `fallocate` mode. Returns `false` when the file system (or kernel) does not support
    /// it, remembering that for next time.
    private func fallocate(_ change: AllocationChange, count: UInt64, at offset: UInt64, for operation: String)
        throws(NBDError) -> Bool
    {
        let supported: Bool
        let mode: Int32
        switch change {
        case .punchHole:
            supported = canPunchHole.load(ordering: .relaxed)
            mode = LinuxFileCalls.fallocPunchHole | LinuxFileCalls.fallocKeepSize
        case .zeroRange:
            supported = canZeroRange.load(ordering: .relaxed)
            mode = LinuxFileCalls.fallocZeroRange | LinuxFileCalls.fallocKeepSize
        }
        guard supported, let fallocate = LinuxFileCalls.fallocate else { return false }
        while fallocate(fd, mode, off_t(offset), off_t(count)) != 0 {
            let code = errno
            switch code {
            case EINTR:
                continue
            case EOPNOTSUPP, ENOSYS:
                switch change {
                case .punchHole: canPunchHole.store(false, ordering: .relaxed)
                case .zeroRange: canZeroRange.store(false, ordering: .relaxed)
                }
                return false
            default:
                throw NBDError(errno: code, "\(operation) of \(count) bytes at offset \(offset) in \(path)")
            }
        }
        return true
    }

    private func writeZeroes(count: UInt64, at offset: UInt64) throws(NBDError) {
        var done: UInt64 = 0
        while done < count {
            let length = Int(min(count - done, UInt64(Self.zeroChunkSize)))
            try writeAll(UnsafeRawBufferPointer(rebasing: ZeroBuffer.bytes[0..<length]), at: offset + done)
            done += UInt64(length)
        }
    }

    private func checkWritable(_ operation: String) throws(NBDError) {
        guard !isReadOnly else {
            throw NBDError(.notPermitted, "cannot \(operation): \(path) was opened read-only")
        }
    }

    // MARK: - Extents and cache

    /// Describes `count` bytes at `offset` as data and holes, from `SEEK_DATA` and `SEEK_HOLE`.
    func extents(count: UInt64, at offset: UInt64, one: Bool) throws(NBDError) -> [Extent] {
        let end = min(offset + count, size)
        var result: [Extent] = []
        var position = offset
        func append(_ extent: Extent) {
            if let last = result.last, last.flags == extent.flags {
                result[result.count - 1].length += extent.length
            } else {
                result.append(extent)
            }
        }
        while position < end && result.count < Self.maximumExtents {
            let data = lseek(fd, off_t(position), LinuxFileCalls.seekData)
            if data < 0 {
                let code = errno
                switch code {
                case ENXIO:
                    // No data at or after `position`: the rest of the file is a hole.
                    append(.hole(end - position))
                case EINVAL, EOPNOTSUPP:
                    // The file system cannot tell; all of it may hold data.
                    append(.data(end - position))
                default:
                    throw NBDError(errno: code, "cannot find data at offset \(position) in \(path)")
                }
                break
            }
            if UInt64(data) > position {
                let stop = min(UInt64(data), end)
                append(.hole(stop - position))
                position = stop
            } else {
                let hole = lseek(fd, off_t(position), LinuxFileCalls.seekHole)
                guard hole >= 0 else {
                    let code = errno
                    // ENXIO: the file shrank since SEEK_DATA; let the read report that.
                    guard code == ENXIO else {
                        throw NBDError(errno: code, "cannot find holes at offset \(position) in \(path)")
                    }
                    append(.data(end - position))
                    break
                }
                // A hole can appear between the two calls; never report an empty extent.
                let stop = max(min(UInt64(hole), end), position + 1)
                append(.data(stop - position))
                position = stop
            }
            if one { break }
        }
        return result
    }

    /// Asks the kernel to read `count` bytes at `offset` into the page cache in the background.
    func prefetch(count: UInt64, at offset: UInt64) throws(NBDError) {
        let code = posix_fadvise(fd, off_t(offset), off_t(count), POSIX_FADV_WILLNEED)
        guard code == 0 else {
            throw NBDError(errno: code, "cannot prefetch \(count) bytes at offset \(offset) of \(path)")
        }
    }

    // MARK: - Device facts

    /// Reads `/sys/dev/block/MAJOR:MINOR/queue/rotational` for `device`. A file's `st_dev` is often a
    /// partition, whose queue settings live in the parent disk's directory (`../queue`).
    private static func readRotational(device: dev_t) -> Bool {
        // The encoding of gnu_dev_major/gnu_dev_minor in <sys/sysmacros.h>, which Swift does not import.
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
        let minor = (device & 0xff) | ((device >> 12) & ~0xff)
        let base = "/sys/dev/block/\(major):\(minor)"
        for candidate in ["\(base)/queue/rotational", "\(base)/../queue/rotational"] {
            guard let file = fopen(candidate, "r") else { continue }
            defer { fclose(file) }
            return fgetc(file) == Int32(UInt8(ascii: "1"))
        }
        return false
    }
}

/// A read-only run of zeroes to write from when zeroing falls back to writing.
enum ZeroBuffer {
    /// `calloc` of a large block maps fresh zero pages, so this costs no memory until it is read.
    /// Never written, and never freed: sharing it across threads is safe.
    nonisolated(unsafe) static let bytes = UnsafeRawBufferPointer(
        start: calloc(1, FileStore.zeroChunkSize), count: FileStore.zeroChunkSize)
}

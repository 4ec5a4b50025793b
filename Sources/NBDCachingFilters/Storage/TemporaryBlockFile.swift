import Glibc
import NBDCore
import Synchronization

/// A sparse scratch file holding fixed-size blocks: the cache filter's cache and the cow filter's
/// overlay.
///
/// The file is created in `TMPDIR` (default `/var/tmp`, as nbdkit: caches can be large, and `/tmp`
/// is often a small tmpfs) and unlinked at once, so nothing is left behind however the process
/// ends, SIGKILL included; the space returns to the filesystem when the descriptor closes.
///
/// Calls block the calling thread for as long as the kernel takes; on a local disk that is the time
/// of a memory copy unless the page cache is under pressure.
package final class TemporaryBlockFile: Sendable {
    /// The directory used when `TMPDIR` is not set.
    package static let defaultDirectory = "/var/tmp"

    /// The block size the file is used with.
    package let blockSize: Int
    /// The size the file was extended to (a multiple of ``blockSize``).
    package let size: UInt64
    /// The directory the file was created in.
    package let directory: String
    private let descriptor: Int32
    /// A test hook: when not 0, writes fail with this `errno` before reaching the kernel, so tests can
    /// make the file "full" (`ENOSPC`) without filling a disk. An atomic, read once per write.
    package let injectedWriteError = Atomic<Int32>(0)
    /// The number of ``write(block:at:_:)`` calls (a test hook: a write of a run of whole blocks is
    /// one call, so one `pwrite`, not one per block).
    package let writeCalls = Atomic<Int>(0)

    /// Creates an unlinked file of `size` bytes (rounded up to whole blocks) in `directory`, or in
    /// `TMPDIR` when `nil`. The block size is `minimumBlockSize`, or the filesystem's block size when
    /// that is larger, so that punching a hole in one block frees its space.
    package init(size: UInt64, minimumBlockSize: Int, directory: String? = nil, purpose: String) throws(NBDError) {
        let directory = directory ?? Self.temporaryDirectory
        var template = Array("\(directory)/nbd-\(purpose)-XXXXXX".utf8CString)
        // mkostemp is not exported by Swift's Glibc module (it needs _GNU_SOURCE): mkstemp and then
        // FD_CLOEXEC, as nbdkit does where mkostemp is missing.
        let raw = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard raw >= 0 else {
            throw NBDError(errno: errno, "\(purpose): cannot create a temporary file in \(directory) (set TMPDIR)")
        }
        // Unlink first, before anything else can fail: from here on the file has no name.
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        unlink(path)
        _ = fcntl(raw, F_SETFD, FD_CLOEXEC)
        var filesystem = statvfs()
        let filesystemBlock = fstatvfs(raw, &filesystem) == 0 ? Int(filesystem.f_bsize) : 0
        let blockSize = max(minimumBlockSize, filesystemBlock)
        let rounded = (size + UInt64(blockSize) - 1) / UInt64(blockSize) * UInt64(blockSize)
        guard ftruncate(raw, off_t(rounded)) == 0 else {
            let code = errno
            close(raw)
            throw NBDError(errno: code, "\(purpose): cannot size the temporary file in \(directory)")
        }
        self.descriptor = raw
        self.blockSize = blockSize
        self.size = rounded
        self.directory = directory
    }

    deinit {
        close(descriptor)
    }

    /// `TMPDIR`, or `/var/tmp` when it is not set (nbdkit's choice).
    package static var temporaryDirectory: String {
        if let value = getenv("TMPDIR"), value.pointee != 0 { return String(cString: value) }
        return defaultDirectory
    }

    /// Reads `buffer.count` bytes of block `index`, starting `within` bytes into the block.
    package func read(block index: UInt64, from within: Int = 0, into buffer: UnsafeMutableRawBufferPointer)
        throws(NBDError)
    {
        guard let base = buffer.baseAddress else { return }
        let start = off_t(index) * off_t(blockSize) + off_t(within)
        var done = 0
        while done < buffer.count {
            let result = pread(descriptor, base + done, buffer.count - done, start + off_t(done))
            if result > 0 {
                done += result
            } else if result == 0 {
                // Past the end cannot happen (the file is sized up front); read as zeroes regardless.
                (base + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                return
            } else if errno != EINTR {
                throw NBDError(errno: errno, "reading block \(index) of the temporary file")
            }
        }
    }

    /// Writes `data` into block `index`, starting `within` bytes into the block; data longer than
    /// the rest of the block continues into the blocks after it (the file mirrors the export, so a
    /// run of blocks is one contiguous range of the file).
    ///
    /// - Throws: `ENOSPC` when the filesystem is full: the block keeps whatever it held before.
    package func write(block index: UInt64, at within: Int = 0, _ data: UnsafeRawBufferPointer) throws(NBDError) {
        writeCalls.add(1, ordering: .relaxed)
        let code = injectedWriteError.load(ordering: .relaxed)
        if code != 0 {
            throw NBDError(errno: code, "writing block \(index) of the temporary file in \(directory)")
        }
        guard let base = data.baseAddress else { return }
        let start = off_t(index) * off_t(blockSize) + off_t(within)
        var done = 0
        while done < data.count {
            let result = pwrite(descriptor, base + done, data.count - done, start + off_t(done))
            if result >= 0 {
                done += result
            } else if errno != EINTR {
                throw NBDError(errno: errno, "writing block \(index) of the temporary file in \(directory)")
            }
        }
    }

    /// Makes block `index` read as zeroes: punches it out where the filesystem can (no data is
    /// written, so zeroing gigabytes costs no I/O), else writes a block of zeroes.
    package func zero(block index: UInt64) throws(NBDError) {
        let punchHole: Int32 = 0x02, keepSize: Int32 = 0x01  // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        if let fallocate = Self.fallocate,
            fallocate(descriptor, punchHole | keepSize, off_t(index) * off_t(blockSize), off_t(blockSize)) == 0
        {
            return
        }
        let zeroes = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
        try write(block: index, UnsafeRawBufferPointer(zeroes))
    }

    /// Gives block `index`'s space back to the filesystem; it reads as zeroes afterwards. Best effort:
    /// a filesystem without hole punching keeps the space, which costs space, not correctness.
    package func release(block index: UInt64) {
        let punchHole: Int32 = 0x02, keepSize: Int32 = 0x01  // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        _ = Self.fallocate?(descriptor, punchHole | keepSize, off_t(index) * off_t(blockSize), off_t(blockSize))
    }

    private typealias FallocateFunction = @convention(c) @Sendable (Int32, Int32, off_t, off_t) -> Int32

    /// `fallocate(2)`, which Swift's Glibc module does not export (glibc declares it under
    /// `_GNU_SOURCE`), looked up once with `dlsym` in the process's global symbols.
    private static let fallocate: FallocateFunction? = {
        guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate") else { return nil }
        return unsafeBitCast(address, to: FallocateFunction.self)
    }()

    /// The bytes the file occupies on disk (`st_blocks`), for tests of the size limit.
    package var allocatedBytes: UInt64 {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return 0 }
        return UInt64(info.st_blocks) * 512
    }
}

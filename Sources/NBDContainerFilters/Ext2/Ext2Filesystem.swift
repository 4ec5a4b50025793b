import CExt2Shim
import Dispatch
import NBDCore
import Synchronization

/// One ext2/3/4 filesystem opened with libext2fs over the layer below, shared by every connection
/// (as nbdkit shares one: two instances of libext2fs writing one image would each allocate blocks
/// the other does not know are used).
///
/// libext2fs is neither async nor thread-safe, so every call into it runs on ``queue``, one at a
/// time, while the calling task waits without blocking its thread. Reads, and writes to blocks a
/// file already has, do not call libext2fs at all (see ``Ext2FileBackend``).
final class Ext2Filesystem: @unchecked Sendable {
    // @unchecked Sendable: `handle` and `dirty` are only used on `queue`; the rest is immutable.
    let library: LibExt2fs
    let device: Ext2Device
    /// Whether the filesystem was opened for writing (the layer below is writable and the opening
    /// connection was not read-only).
    let isWritable: Bool
    /// The filesystem block size in bytes.
    let blockSize: UInt64
    private let queue = DispatchQueue(label: "nbd.ext2.filesystem")
    private var handle: OpaquePointer?
    /// Whether libext2fs changed metadata (allocated blocks) since the last flush.
    private var dirty = false
    /// The files connections have opened, by inode, shared so a block allocated through one
    /// connection is seen by the others.
    private let files = LockedValue<[UInt32: Ext2File]>([:])

    private init(library: LibExt2fs, device: Ext2Device, isWritable: Bool, handle: OpaquePointer, blockSize: UInt64) {
        self.library = library
        self.device = device
        self.isWritable = isWritable
        self.handle = handle
        self.blockSize = blockSize
    }

    /// Opens the filesystem in the image `below` serves; for writing when `writable`.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the image is not an ext2/3/4 filesystem, or is truncated
    ///   or corrupt, with libext2fs' reason; what the layer below throws.
    static func open(_ below: AnyBlockBackend, writable: Bool, library: LibExt2fs) async throws(NBDError)
        -> Ext2Filesystem
    {
        let device = Ext2Device(below: below)
        let writable = writable && below.capabilities.isWritable
        let queue = DispatchQueue(label: "nbd.ext2.open")
        let opened: Result<(OpaquePointer, UInt64), NBDError> = await withCheckedContinuation { continuation in
            queue.async {
                var handle: OpaquePointer?
                let flags = LibExt2fs.open64Bit | (writable ? LibExt2fs.openReadWrite : 0)
                let status = library.open(device.name, flags, 0, 0, cext2_io_manager(), &handle)
                guard status == 0, let handle else {
                    continuation.resume(
                        returning: .failure(
                            Self.openError(status, device: device, library: library)))
                    return
                }
                continuation.resume(returning: .success((handle, UInt64(Self.blockSize(of: handle)))))
            }
        }
        let (handle, blockSize) = try opened.get()
        return Ext2Filesystem(
            library: library, device: device, isWritable: writable, handle: handle, blockSize: blockSize)
    }

    /// `fs->blocksize`: struct_ext2_filsys starts with `errcode_t magic; io_channel io; int flags;
    /// char *device_name; struct ext2_super_block *super; unsigned int blocksize;` (ext2fs.h).
    private static func blockSize(of handle: OpaquePointer) -> UInt32 {
        UnsafeRawPointer(handle).load(fromByteOffset: 40, as: UInt32.self)
    }

    private static func openError(_ status: Int, device: Ext2Device, library: LibExt2fs) -> NBDError {
        if let error = device.lastError, status < LibExt2fs.errorBase || status == LibExt2fs.errorShortRead {
            return NBDError(error.code, "ext2: cannot open the image below as an ext2/3/4 filesystem: \(error.message)")
        }
        let reason = library.message(status)
        switch status {
        case LibExt2fs.errorBadMagic, LibExt2fs.errorShortRead, LibExt2fs.errorCorruptSuperblock:
            return NBDError(
                .invalidArgument,
                "ext2: the image below is not an ext2, ext3 or ext4 filesystem (\(device.size) bytes; libext2fs: \(reason))"
            )
        case LibExt2fs.errorUnsupportedFeature:
            return NBDError(
                .notSupported, "ext2: the filesystem uses a feature this libext2fs does not support (\(reason))")
        default:
            return NBDError(.invalidArgument, "ext2: cannot open the image below as an ext2/3/4 filesystem: \(reason)")
        }
    }

    /// Runs `body` with the open filesystem on the serial queue and waits for it.
    func run<Value: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws(NBDError) -> Value)
        async throws(NBDError) -> Value
    {
        let result: Result<Value, NBDError> = await withCheckedContinuation { continuation in
            queue.async {
                guard let handle = self.handle else {
                    continuation.resume(returning: .failure(NBDError(.shutdown, "ext2: the filesystem is closed")))
                    return
                }
                self.device.lastError = nil
                continuation.resume(returning: Result { () throws(NBDError) in try body(handle) })
            }
        }
        return try result.get()
    }

    /// An error for a failed libext2fs call: the layer below's own error when a callback failed.
    func error(_ status: Int, _ what: String) -> NBDError {
        if let below = device.lastError { return NBDError(below.code, "ext2: \(what): \(below.message)") }
        return NBDError(.ioError, "ext2: \(what): \(library.message(status))")
    }

    /// The regular file at absolute `path`, opened (and mapped) once and shared by the connections.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when `path` is not in the filesystem or is not a regular file.
    func file(at path: String) async throws(NBDError) -> Ext2File {
        let library = library
        let inode: UInt32 = try await run { handle throws(NBDError) in
            var inode = LibExt2fs.rootInode
            if path != "/" {
                let status = path.dropFirst().withCString {
                    library.namei(handle, LibExt2fs.rootInode, LibExt2fs.rootInode, $0, &inode)
                }
                guard status == 0 else {
                    if status == LibExt2fs.errorFileNotFound || status == LibExt2fs.errorNoDirectory {
                        throw NBDError(
                            .invalidArgument, "ext2: '\(path)' is not in the filesystem (\(library.message(status)))")
                    }
                    throw self.error(status, "looking up '\(path)'")
                }
            }
            return inode
        }
        if let file = files.withLock({ $0[inode] }) { return file }
        let file = try await map(inode: inode, path: path)
        return files.withLock { files in
            if let existing = files[inode] { return existing }
            files[inode] = file
            return file
        }
    }

    /// Reads the inode, checks it is a regular file, and maps its blocks.
    private func map(inode: UInt32, path: String) async throws(NBDError) -> Ext2File {
        let library = library
        let blockSize = blockSize
        let (size, map): (UInt64, Ext2BlockMap) = try await run { handle throws(NBDError) in
            // struct ext2_inode is 128 bytes; i_mode is its first field.
            var raw = [UInt8](repeating: 0, count: 256)
            let status = raw.withUnsafeMutableBytes { library.readInode(handle, inode, $0.baseAddress) }
            guard status == 0 else { throw self.error(status, "reading the inode of '\(path)'") }
            let mode = UInt16(raw[0]) | UInt16(raw[1]) << 8
            guard mode & 0o170000 == 0o100000 else {
                let kind =
                    mode & 0o170000 == 0o040000
                    ? "a directory" : mode & 0o170000 == 0o120000 ? "a symbolic link" : "not a regular file"
                throw NBDError(
                    .invalidArgument, "ext2: '\(path)' is \(kind); ext2file must name a regular file in the image")
            }
            var file: OpaquePointer?
            let opened = library.fileOpen(handle, inode, 0, &file)
            guard opened == 0, let file else { throw self.error(opened, "opening '\(path)'") }
            defer { _ = library.fileClose(file) }
            var size: UInt64 = 0
            let sized = library.fileSize(file, &size)
            guard sized == 0 else { throw self.error(sized, "reading the size of '\(path)'") }
            let blocks = (size + blockSize - 1) / blockSize
            let flags = UInt32(raw[32]) | UInt32(raw[33]) << 8 | UInt32(raw[34]) << 16 | UInt32(raw[35]) << 24
            if flags & LibExt2fs.inodeExtents != 0 {
                return (size, try self.mapExtents(handle, inode: inode, path: path))
            }
            // Block-mapped (ext2, ext3): block by block, each lookup reading indirect blocks, which
            // the device keeps while the map is made.
            self.device.metadataCache = [:]
            defer { self.device.metadataCache = nil }
            return (size, try self.mapBlocks(handle, inode: inode, blocks: 0..<blocks, path: path))
        }
        return Ext2File(inode: inode, path: path, size: size, map: map)
    }

    /// The mapping of an extent-mapped file, from its extent tree (on the queue).
    private func mapExtents(_ handle: OpaquePointer, inode: UInt32, path: String) throws(NBDError) -> Ext2BlockMap {
        var map = Ext2BlockMap(blockSize: blockSize)
        var extents: OpaquePointer?
        let opened = library.extentOpen(handle, inode, nil, &extents)
        guard opened == 0, let extents else { throw error(opened, "reading the extents of '\(path)'") }
        defer { library.extentFree(extents) }
        var operation = LibExt2fs.extentRoot
        var extent = cext2_extent()
        while true {
            let status = library.extentGet(extents, operation, &extent)
            if status == LibExt2fs.errorExtentNoNext { break }
            guard status == 0 else { throw error(status, "reading the extents of '\(path)'") }
            operation = LibExt2fs.extentNext
            // Index entries lead to leaves; only leaves map file blocks. ext2fs_extent_get returns
            // the walk's entries in increasing logical order.
            guard extent.flags & LibExt2fs.extentLeaf != 0 else { continue }
            if let last = map.runs.last, extent.logical < last.end {
                throw NBDError(
                    .invalidArgument,
                    "ext2: the extent tree of '\(path)' is corrupt: its extents overlap or are out of order")
            }
            map.append(
                logical: extent.logical, physical: extent.physical, count: UInt64(extent.count),
                unwritten: extent.flags & LibExt2fs.extentUnwritten != 0)
        }
        return map
    }

    /// The mapping of file blocks `blocks` (on the queue).
    private func mapBlocks(_ handle: OpaquePointer, inode: UInt32, blocks: Range<UInt64>, path: String)
        throws(NBDError) -> Ext2BlockMap
    {
        var map = Ext2BlockMap(blockSize: blockSize)
        for block in blocks {
            var flags: Int32 = 0
            var physical: UInt64 = 0
            let status = library.blockMap(handle, inode, nil, nil, 0, block, &flags, &physical)
            guard status == 0 else { throw error(status, "mapping block \(block) of '\(path)'") }
            map.append(logical: block, physical: physical, unwritten: flags & LibExt2fs.mappedUnwritten != 0)
        }
        return map
    }

    /// Writes `data` at `offset` of `file` through libext2fs, which allocates the blocks of holes
    /// and marks unwritten blocks written, then updates the file's map.
    func writeAllocating(_ data: UnsafeRawBufferPointer, at offset: UInt64, of file: Ext2File) async throws(NBDError) {
        guard !data.isEmpty else { return }
        let source = UncheckedData(pointer: data)
        let library = library
        let blockSize = blockSize
        let remapped: Ext2BlockMap = try await run { handle throws(NBDError) in
            // A file handle of its own for each write: an ext2_file_t caches one block, which the
            // direct writes of other requests would make stale.
            var opened: OpaquePointer?
            let status = library.fileOpen(handle, file.inode, LibExt2fs.fileWrite, &opened)
            guard status == 0, let opened else { throw self.error(status, "opening '\(file.path)' to write") }
            var closed = false
            defer { if !closed { _ = library.fileClose(opened) } }
            self.dirty = true
            var done = 0
            while done < source.pointer.count {
                let seek = library.fileSeek(opened, offset + UInt64(done), LibExt2fs.seekSet, nil)
                guard seek == 0 else { throw self.error(seek, "writing '\(file.path)'") }
                var written: UInt32 = 0
                let chunk = UInt32(min(source.pointer.count - done, 1 << 30))
                let wrote = library.fileWrite(opened, source.pointer.baseAddress! + done, chunk, &written)
                guard wrote == 0 else { throw self.error(wrote, "writing '\(file.path)'") }
                guard written > 0 else { throw NBDError(.ioError, "ext2: writing '\(file.path)' made no progress") }
                done += Int(written)
            }
            closed = true
            let closing = library.fileClose(opened)
            guard closing == 0 else { throw self.error(closing, "writing '\(file.path)'") }
            let first = offset / blockSize
            let last = (offset + UInt64(source.pointer.count) + blockSize - 1) / blockSize
            return try self.mapBlocks(handle, inode: file.inode, blocks: first..<last, path: file.path)
        }
        let first = offset / blockSize
        let last = (offset + UInt64(data.count) + blockSize - 1) / blockSize
        file.map.withLock { $0.replace(first..<last, with: remapped) }
    }

    /// Writes the metadata libext2fs changed (bitmaps, group descriptors, superblock), then flushes
    /// the layer below.
    func flush() async throws(NBDError) {
        try await run { handle throws(NBDError) in
            guard self.dirty else { return }
            let status = self.library.flush(handle)
            guard status == 0 else { throw self.error(status, "flushing the filesystem") }
            self.dirty = false
        }
        try await device.below.flush(flags: [])
    }

    /// Closes the filesystem (writing its metadata) and the layer below. Later calls fail.
    func close() async {
        await closeFilesystemOnly()
        await device.below.close()
    }

    /// Closes the filesystem (writing its metadata) but not the layer below.
    func closeFilesystemOnly() async {
        let library = library
        _ = try? await run { handle throws(NBDError) in
            _ = library.close(handle)
            self.handle = nil
        }
    }
}

/// A pointer to data a task writes while its owner waits.
private struct UncheckedData: @unchecked Sendable {
    // @unchecked Sendable: the caller of writeAllocating waits until the queue is done with it.
    let pointer: UnsafeRawBufferPointer
}

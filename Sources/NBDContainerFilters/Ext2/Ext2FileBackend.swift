import NBDCore
import Synchronization

/// One connection's view of a file inside the filesystem: its bytes are read, and written where
/// blocks are already allocated, straight from the image below at the places the file's block map
/// gives. Writes to holes or unwritten extents go through libext2fs, which allocates the blocks.
struct Ext2FileBackend: BlockBackend {
    let filesystem: Ext2Filesystem
    let file: Ext2File
    let capabilities: Capabilities
    /// Whether closing this connection closes the filesystem (it was opened for it alone).
    let ownsFilesystem: Bool

    init(filesystem: Ext2Filesystem, file: Ext2File, readOnly: Bool, ownsFilesystem: Bool) {
        self.filesystem = filesystem
        self.file = file
        self.ownsFilesystem = ownsFilesystem
        let below = filesystem.device.below.capabilities
        // nbdkit's choices: FUA native (done as a flush), flush always (of the filesystem), zero
        // by writing, no trim, cache emulated by reading, no multi-conn, no extents.
        var capabilities = Capabilities(
            size: file.size, isWritable: true, canFlush: true, fua: .native, canTrim: false, canZero: true,
            canFastZero: false, cache: .emulated, canExtents: false, canMultiConn: false,
            isRotational: below.isRotational, blockSize: .default,
            // A flush writes the filesystem's metadata through libext2fs, then syncs below.
            slowOperations: below.slowOperations.union(below.suspendingOperations).union([.flush, .fuaRequests]))
        if readOnly || !filesystem.isWritable { capabilities = capabilities.readOnly }
        self.capabilities = capabilities
    }

    var exportDescription: String? {
        filesystem.device.below.exportDescription.map { "embedded '\(file.path)' from within ext2 image: \($0)" }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        let below = filesystem.device.below
        let segments = file.map.withLock { $0.segments(offset: offset, count: buffer.count) }
        for segment in segments {
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[segment.start..<(segment.start + segment.count)])
            switch segment.kind {
            case .stored(let position):
                try await below.read(into: piece, at: position, flags: [])
            case .hole, .unwritten:
                piece.initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let below = filesystem.device.below
        let segments = file.map.withLock { $0.segments(offset: offset, count: data.count) }
        for segment in segments {
            let piece = UnsafeRawBufferPointer(rebasing: data[segment.start..<(segment.start + segment.count)])
            switch segment.kind {
            case .stored(let position):
                try await below.write(piece, at: position, flags: [])
            case .hole, .unwritten:
                try await filesystem.writeAllocating(piece, at: offset + UInt64(segment.start), of: file)
            }
        }
        if flags.contains(.fua) { try await filesystem.flush() }
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        // Written as zeroes, as nbdkit does: libext2fs cannot punch or preallocate a range.
        let chunk = Int(min(count, 1 << 20))
        let zeroes = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < count {
            let length = Int(min(count - done, UInt64(chunk)))
            let segments = file.map.withLock { $0.segments(offset: offset + done, count: length) }
            for segment in segments {
                // Holes and unwritten blocks already read as zeroes: nothing to allocate.
                guard case .stored(let position) = segment.kind else { continue }
                try await filesystem.device.below.write(
                    UnsafeRawBufferPointer(rebasing: zeroes[0..<segment.count]), at: position, flags: [])
            }
            done += UInt64(length)
        }
        if flags.contains(.fua) { try await filesystem.flush() }
    }

    func flush(flags: CommandFlags) async throws(NBDError) {
        try await filesystem.flush()
    }

    func close() async {
        if ownsFilesystem { await filesystem.close() }
    }
}

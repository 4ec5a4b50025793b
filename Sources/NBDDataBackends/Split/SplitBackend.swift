import NBDBackends
import NBDCore

/// One connection's view of a ``SplitBackendProvider``'s export: each request is cut at the
/// boundaries between files and each piece goes to its file's `FileBackend`.
public struct SplitBackend: BlockBackend {
    public let capabilities: Capabilities
    let parts: [SplitBackendProvider.Part<FileBackend>]

    init(parts: [SplitBackendProvider.Part<FileBackend>], size: UInt64, isReadOnly: Bool) {
        self.parts = parts
        // As nbdkit's split plugin: no flush (so no FUA), no trim, zero by writing zeroes, block
        // status from each file's holes, and no multi-conn.
        let capabilities = Capabilities(
            size: size, isWritable: !isReadOnly, canFlush: false, fua: .none, canTrim: false, canZero: true,
            canFastZero: true, cache: .native, canExtents: true, canMultiConn: false)
        self.capabilities = isReadOnly ? capabilities.readOnly : capabilities
    }

    /// Calls `body` for each file the range touches, with the file, the offset within it, the
    /// length within it and the offset of the piece within the request.
    private func forEachPart(
        count: UInt64, at offset: UInt64,
        _ body: (FileBackend, UInt64, UInt64, Int) async throws(NBDError) -> Bool
    ) async throws(NBDError) {
        var index = SplitBackendProvider.partIndex(containing: offset, in: parts)
        var position = offset
        let end = offset + count
        while position < end && index < parts.count {
            let part = parts[index]
            let within = position - part.start
            let length = min(part.size - within, end - position)
            guard try await body(part.backend, within, length, Int(position - offset)) else { return }
            position += length
            index += 1
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await forEachPart(count: UInt64(buffer.count), at: offset) {
            (file, within, length, start) throws(NBDError) in
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[start..<start + Int(length)])
            try await file.read(into: piece, at: within, flags: [])
            return true
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await forEachPart(count: UInt64(data.count), at: offset) { (file, within, length, start) throws(NBDError) in
            try await file.write(
                UnsafeRawBufferPointer(rebasing: data[start..<start + Int(length)]), at: within, flags: [])
            return true
        }
    }

    /// Zeroes each file's piece, keeping it allocated, as nbdkit's split plugin does by writing
    /// zeroes; a fast zero is refused with `ENOTSUP`, as nbdkit refuses it when it emulates zero.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if flags.contains(.fastZero) {
            throw NBDError(.notSupported, "the split backend zeroes by writing, which is not fast")
        }
        try await forEachPart(count: count, at: offset) { (file, within, length, _) throws(NBDError) in
            try await file.zero(count: length, at: within, flags: [.noHole])
            return true
        }
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await forEachPart(count: count, at: offset) { (file, within, length, _) throws(NBDError) in
            try await file.cache(count: length, at: within, flags: flags)
            return true
        }
    }

    /// Each file's data and holes in turn; with REQ_ONE, the first extent only.
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        var result: [Extent] = []
        try await forEachPart(count: count, at: offset) { (file, within, length, _) throws(NBDError) in
            for extent in try await file.extents(count: length, at: within, flags: flags) {
                if let last = result.last, last.flags == extent.flags {
                    result[result.count - 1].length += extent.length
                } else {
                    result.append(extent)
                }
            }
            return !flags.contains(.requestOne) && result.count < 4096
        }
        return result
    }
}

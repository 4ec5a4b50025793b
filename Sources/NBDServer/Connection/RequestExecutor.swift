import NBDCore

/// Carries out one validated request against a connection's stack and appends its reply to an
/// output buffer. The same code serves inline requests (the connection's own buffer) and slow ones
/// (a buffer owned by the pool task).
struct RequestExecutor<Backend: BlockBackend>: Sendable {
    let backend: Backend
    let structuredReplies: Bool
    /// Whether the stack tracks allocation; if not, block status reports everything as data without
    /// asking it.
    let stackReportsExtents: Bool
    let connectionID: UInt64
    let logger: (@Sendable (String) -> Void)?

    /// Performs `command` and appends the reply. `payload` is the data of a write and empty otherwise.
    func perform(
        _ command: Command, flags: CommandFlags, cookie: UInt64, offset: UInt64, length: UInt32,
        payload: UnsafeRawBufferPointer, into output: inout OutputBuffer
    ) async {
        let count = UInt64(length)
        do {
            switch command {
            case .read:
                try await read(flags: flags, cookie: cookie, offset: offset, length: Int(length), into: &output)
                return
            case .blockStatus:
                try await blockStatus(flags: flags, cookie: cookie, offset: offset, count: count, into: &output)
                return
            case .write:
                try await backend.write(payload, at: offset, flags: flags)
            case .writeZeroes:
                try await backend.zero(count: count, at: offset, flags: flags)
            case .trim:
                try await backend.trim(count: count, at: offset, flags: flags)
            case .flush:
                try await backend.flush(flags: flags)
            case .cache:
                try await backend.cache(count: count, at: offset, flags: flags)
            case .disconnect:
                return
            }
            output.appendSimpleReply(cookie: cookie, error: 0)
        } catch {
            logger?("connection \(connectionID): \(command) of \(length) bytes at \(offset) failed: \(error)")
            output.appendErrorReply(cookie: cookie, error: error, flags: flags, structured: structuredReplies)
        }
    }

    /// Reads straight into the output buffer behind the reply header, so the data is copied once
    /// (backend to buffer) before the kernel copy, and header and data leave in one `send`.
    private func read(flags: CommandFlags, cookie: UInt64, offset: UInt64, length: Int, into output: inout OutputBuffer)
        async throws(NBDError)
    {
        let mark = output.count
        if structuredReplies {
            // One OFFSET_DATA chunk for the whole read, so DF is always satisfied.
            output.appendChunkHeader(
                cookie: cookie, flags: ChunkType.flagDone, type: ChunkType.offsetData, length: UInt32(8 + length))
            output.append(offset)
        } else {
            output.appendSimpleReply(cookie: cookie, error: 0)
        }
        let region = output.append(uninitialized: length)
        do {
            try await backend.read(into: region, at: offset, flags: flags)
        } catch {
            output.truncate(to: mark)
            throw error
        }
    }

    /// Answers block status for `base:allocation` with one `NBD_REPLY_TYPE_BLOCK_STATUS` chunk.
    private func blockStatus(
        flags: CommandFlags, cookie: UInt64, offset: UInt64, count: UInt64, into output: inout OutputBuffer
    )
        async throws(NBDError)
    {
        let extents: [Extent]
        if stackReportsExtents {
            extents = try await backend.extents(count: count, at: offset, flags: flags)
        } else {
            extents = [.data(count)]
        }
        let mark = output.count
        output.appendChunkHeader(cookie: cookie, flags: ChunkType.flagDone, type: ChunkType.blockStatus, length: 0)
        output.append(baseAllocationContextID)
        var described: UInt64 = 0
        var descriptors = 0
        for extent in extents where extent.length > 0 {
            // The reply may cover less than asked but never more; lengths fit in 32 bits because the
            // request length does.
            let length = min(extent.length, count - described)
            output.append(UInt32(length))
            output.append(extent.flags.rawValue & (Extent.Flags.hole.rawValue | Extent.Flags.zero.rawValue))
            described += length
            descriptors += 1
            // The protocol asks for at most 2^20 descriptors per chunk.
            if described == count || flags.contains(.requestOne) || descriptors == 1 << 20 { break }
        }
        guard descriptors > 0 else {
            output.truncate(to: mark)
            throw NBDError(.ioError, "the backend reported no extents for \(count) bytes at offset \(offset)")
        }
        output.set(UInt32(4 + 8 * descriptors), at: mark + 16)
    }
}

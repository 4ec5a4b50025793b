import NBDCore
import NBDWire

/// Carries out one validated request against a connection's stack and appends its reply to an
/// output buffer. The same code serves inline requests (the connection's own buffer) and slow ones
/// (a buffer owned by the pool task).
struct RequestExecutor<Backend: BlockBackend>: Sendable {
    let backend: Backend
    /// How replies are framed: simple, structured, or extended headers.
    let framing: ReplyFraming
    /// Whether the stack tracks allocation; if not, block status reports everything as data without
    /// asking it.
    let stackReportsExtents: Bool
    /// Structured reads at least this long ask the stack for extents first and send runs that read
    /// as zeroes as `NBD_REPLY_TYPE_OFFSET_HOLE` chunks; `nil` never does.
    let holeDetectionThreshold: Int?
    let connectionID: UInt64
    /// Where a failed request is reported (``ServerEvent/Kind/requestFailed``).
    let configuration: ServerConfiguration

    /// Whether replies with data are chunks.
    private var structuredReplies: Bool { framing.isStructured }

    /// Performs `command` and appends the reply. `payload` is the data of a write and empty otherwise;
    /// `length` is the effect length (64 bits with extended headers; a read's was validated against
    /// the payload limit).
    func perform(
        _ command: Command, flags: CommandFlags, cookie: UInt64, offset: UInt64, length: UInt64,
        payload: UnsafeRawBufferPointer, into output: inout OutputBuffer
    ) async {
        let count = length
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
            output.appendSuccessReply(cookie: cookie, offset: offset, framing: framing)
        } catch {
            let id = connectionID
            configuration.emit(
                .requestFailed, .warning, "\(command) of \(length) bytes at \(offset) failed: \(error)",
                [
                    "connection": String(id), "command": "\(command)", "offset": String(offset),
                    "length": String(length), "errno": error.code.name,
                ])
            output.appendErrorReply(cookie: cookie, offset: offset, error: error, flags: flags, framing: framing)
        }
    }

    /// Reads straight into the output buffer behind the reply header, so the data is copied once
    /// (backend to buffer) before the kernel copy, and header and data leave in one `send`.
    private func read(flags: CommandFlags, cookie: UInt64, offset: UInt64, length: Int, into output: inout OutputBuffer)
        async throws(NBDError)
    {
        if detectsHoles(flags: flags, length: length), let pieces = await sparsePieces(offset: offset, length: length) {
            return try await readSparse(pieces, flags: flags, cookie: cookie, offset: offset, into: &output)
        }
        let mark = output.count
        appendReadHeader(cookie: cookie, offset: offset, length: length, into: &output)
        let region = output.append(uninitialized: length)
        do {
            try await backend.read(into: region, at: offset, flags: flags)
        } catch {
            output.truncate(to: mark)
            throw error
        }
    }

    /// Whether a read asks the stack for extents first, to send zero runs as hole chunks.
    private func detectsHoles(flags: CommandFlags, length: Int) -> Bool {
        guard structuredReplies, stackReportsExtents, !flags.contains(.dontFragment),
            let threshold = holeDetectionThreshold
        else { return false }
        return length >= threshold
    }

    /// Appends the header of a successful read's reply that carries all `length` bytes in one piece:
    /// a simple reply, or one `OFFSET_DATA` chunk (flagged done) and its offset. The data follows.
    func appendReadHeader(cookie: UInt64, offset: UInt64, length: Int, into output: inout OutputBuffer) {
        if structuredReplies {
            // One OFFSET_DATA chunk for the whole read, so DF is always satisfied.
            output.appendChunkHeader(
                framing: framing, cookie: cookie, flags: ChunkType.flagDone, type: ChunkType.offsetData,
                offset: offset, length: UInt32(8 + length))
            output.append(offset)
        } else {
            output.appendSimpleReply(cookie: cookie, error: 0)
        }
    }

    /// Where the stack holds a read's bytes in a file, so the reply's data can be sent from it
    /// (`sendfile`); `nil` when it cannot say or when the read would be split at holes instead.
    func fileRegion(forReadOf length: Int, at offset: UInt64, flags: CommandFlags) async -> FileRegion? {
        guard !detectsHoles(flags: flags, length: length) else { return nil }
        return await backend.fileRegion(count: length, at: offset)
    }

    /// One run of a sparse read: data to read, or zeroes to describe with a hole chunk.
    struct Piece {
        var start: Int
        var length: Int
        var isZero: Bool
    }

    /// Splits a read into data and zero runs from the stack's extents, or returns `nil` when there is
    /// no zero run (or the stack cannot say), so the plain one-chunk read is used.
    private func sparsePieces(offset: UInt64, length: Int) async -> [Piece]? {
        guard let extents = try? await backend.extents(count: UInt64(length), at: offset, flags: []) else {
            return nil
        }
        var pieces: [Piece] = []
        var position = 0
        for extent in extents where extent.length > 0 && position < length {
            let run = Int(min(extent.length, UInt64(length - position)))
            let isZero = extent.flags.contains(.zero)
            if let last = pieces.last, last.isZero == isZero {
                pieces[pieces.count - 1].length += run
            } else {
                pieces.append(Piece(start: position, length: run, isZero: isZero))
            }
            position += run
        }
        if position < length {
            // Whatever the extents did not describe is read as data.
            if let last = pieces.last, !last.isZero {
                pieces[pieces.count - 1].length += length - position
            } else {
                pieces.append(Piece(start: position, length: length - position, isZero: false))
            }
        }
        return pieces.contains(where: \.isZero) ? pieces : nil
    }

    /// Sends a read as `OFFSET_DATA` and `OFFSET_HOLE` chunks in offset order, `DONE` on the last.
    /// Nothing is sent until every data run was read, so an error still becomes a single error reply.
    private func readSparse(
        _ pieces: [Piece], flags: CommandFlags, cookie: UInt64, offset: UInt64, into output: inout OutputBuffer
    ) async throws(NBDError) {
        let mark = output.count
        for (index, piece) in pieces.enumerated() {
            let chunkFlags = index == pieces.count - 1 ? ChunkType.flagDone : 0
            let pieceOffset = offset + UInt64(piece.start)
            if piece.isZero {
                output.appendChunkHeader(
                    framing: framing, cookie: cookie, flags: chunkFlags, type: ChunkType.offsetHole, offset: offset,
                    length: 12)
                output.append(pieceOffset)
                output.append(UInt32(piece.length))
                continue
            }
            output.appendChunkHeader(
                framing: framing, cookie: cookie, flags: chunkFlags, type: ChunkType.offsetData, offset: offset,
                length: UInt32(8 + piece.length))
            output.append(pieceOffset)
            let region = output.append(uninitialized: piece.length)
            do {
                try await backend.read(into: region, at: pieceOffset, flags: flags)
            } catch {
                output.truncate(to: mark)
                throw error
            }
        }
    }

    /// Answers block status for `base:allocation` with one `NBD_REPLY_TYPE_BLOCK_STATUS` chunk, or
    /// with extended headers one `NBD_REPLY_TYPE_BLOCK_STATUS_EXT` chunk (64-bit extent lengths and
    /// status, and a descriptor count).
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
        let extended = framing == .extended
        let mark = output.count
        output.appendChunkHeader(
            framing: framing, cookie: cookie, flags: ChunkType.flagDone,
            type: extended ? ChunkType.blockStatusExtended : ChunkType.blockStatus, offset: offset, length: 0)
        output.append(baseAllocationContextID)
        let countMark = output.count
        if extended { output.append(UInt32(0)) }
        var described: UInt64 = 0
        var descriptors = 0
        for extent in extents where extent.length > 0 {
            // The reply may cover less than asked but never more; in the compact form lengths fit in
            // 32 bits because the request length does.
            let length = min(extent.length, count - described)
            let status = extent.flags.rawValue & (Extent.Flags.hole.rawValue | Extent.Flags.zero.rawValue)
            if extended {
                output.append(length)
                output.append(UInt64(status))
            } else {
                output.append(UInt32(length))
                output.append(status)
            }
            described += length
            descriptors += 1
            // The protocol asks for at most 2^20 descriptors per chunk.
            if described == count || flags.contains(.requestOne) || descriptors == 1 << 20 { break }
        }
        guard descriptors > 0 else {
            output.truncate(to: mark)
            throw NBDError(.ioError, "the backend reported no extents for \(count) bytes at offset \(offset)")
        }
        if extended {
            output.set(UInt32(descriptors), at: countMark)
            output.setChunkLength(UInt32(8 + 16 * descriptors), framing: framing, headerAt: mark)
        } else {
            output.setChunkLength(UInt32(4 + 8 * descriptors), framing: framing, headerAt: mark)
        }
    }
}

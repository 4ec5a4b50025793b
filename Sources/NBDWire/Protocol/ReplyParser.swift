import NBDCore

/// What a client remembers about a request it sent, enough to check the server's replies to it.
package struct RequestRecord: Sendable, Hashable {
    /// The command.
    package var command: Command
    /// The request's offset.
    package var offset: UInt64
    /// The request's length (for a write, the payload size). Above `UInt32.max` only with extended
    /// headers (a zero, trim, cache or block status of more than 4 GiB in one request).
    package var length: UInt64
    /// The command flags sent.
    package var flags: CommandFlags

    package init(command: Command, offset: UInt64, length: UInt64, flags: CommandFlags) {
        self.command = command
        self.offset = offset
        self.length = length
        self.flags = flags
    }
}

/// One reply or reply chunk, decoded and checked against the request it answers.
package enum ReplyEvent: Sendable, Hashable {
    /// A simple reply. When `error` is 0 and the request was a read, the request's length of data
    /// follows.
    case simple(cookie: UInt64, error: UInt32)
    /// `NBD_REPLY_TYPE_OFFSET_DATA`: `count` bytes for position `position` of the request follow.
    case data(cookie: UInt64, position: Int, count: Int, done: Bool)
    /// `NBD_REPLY_TYPE_OFFSET_HOLE`: `count` zero bytes at position `position` of the request.
    case hole(cookie: UInt64, position: Int, count: Int, done: Bool)
    /// `NBD_REPLY_TYPE_BLOCK_STATUS` (or, with extended headers, `NBD_REPLY_TYPE_BLOCK_STATUS_EXT`)
    /// for `base:allocation`, already clipped to the request.
    case blockStatus(cookie: UInt64, extents: [Extent], done: Bool)
    /// An error chunk, with the server's errno and message.
    case error(cookie: UInt64, errno: UInt32, message: String, done: Bool)
    /// `NBD_REPLY_TYPE_NONE`: the final chunk, nothing else.
    case none(cookie: UInt64)

    /// The cookie of the request this answers.
    package var cookie: UInt64 {
        switch self {
        case .simple(let cookie, _), .data(let cookie, _, _, _), .hole(let cookie, _, _, _),
            .blockStatus(let cookie, _, _), .error(let cookie, _, _, _), .none(let cookie):
            cookie
        }
    }
}

/// Decodes NBD transmission replies (simple replies and structured reply chunks, or with extended
/// headers the 32-byte extended reply chunks) from bytes and checks each against the request it
/// answers. Pure: no I/O and no state of its own, so it can be fuzzed
/// (`Fuzz/ClientReplies`) and every malformed case tested byte for byte.
///
/// Data payloads are not part of the decoded event: the caller reads them straight into the
/// request's buffer, so a 1 MiB read is copied once. Every other payload (holes, block status,
/// errors) must be complete in the bytes given, and is bounded by ``maximumMetadataChunk``.
///
/// Extended headers change only the framing: the 32-byte header carries the request's offset (which
/// must match) and a 64-bit payload length (above 32 bits it is refused: no reply payload can be
/// that long), and block status arrives as `NBD_REPLY_TYPE_BLOCK_STATUS_EXT` with 64-bit extents.
/// Once they are negotiated every compact reply (simple or structured) is a violation, and before
/// that every extended one is.
///
/// Anything the protocol does not allow throws an ``NBDError`` (`EIO`) whose message says what the
/// server sent; the connection must then be closed, because the stream can no longer be trusted.
package struct ReplyParser: Sendable {
    /// The result of one call to ``parse(_:lookup:)``.
    package enum Outcome: Sendable, Hashable {
        /// At least this many bytes (counted from the start of the reply) are needed.
        case needMore(Int)
        /// A reply or chunk: its header (and metadata payload) took `consumed` bytes, and
        /// `payload` bytes of data follow for the caller to read.
        case event(ReplyEvent, consumed: Int, payload: Int)
    }

    /// Whether structured replies were negotiated (implied by extended headers).
    package var structuredReplies: Bool
    /// Whether extended headers were negotiated: every reply then has the 32-byte extended header.
    package var extendedHeaders: Bool
    /// The id the server gave `base:allocation`, if it was negotiated.
    package var allocationContextID: UInt32?
    /// The longest non-data chunk payload accepted (block status, errors). It must fit in the
    /// caller's receive buffer with the chunk header.
    package var maximumMetadataChunk: Int

    package init(
        structuredReplies: Bool, allocationContextID: UInt32?, extendedHeaders: Bool = false,
        maximumMetadataChunk: Int = 256 << 10
    ) {
        self.structuredReplies = structuredReplies || extendedHeaders
        self.extendedHeaders = extendedHeaders
        self.allocationContextID = allocationContextID
        self.maximumMetadataChunk = maximumMetadataChunk
    }

    /// Decodes the reply that starts at the beginning of `bytes`. `lookup` returns the request a
    /// cookie belongs to, or `nil` if no such request is in flight.
    package func parse(_ bytes: UnsafeRawBufferPointer, lookup: (UInt64) -> RequestRecord?) throws(NBDError) -> Outcome
    {
        guard bytes.count >= 4 else { return .needMore(4) }
        switch bytes.uint32(at: 0) {
        case ProtocolConstants.simpleReplyMagic:
            guard !extendedHeaders else {
                throw Self.violation("a compact simple reply, although extended headers were negotiated")
            }
            guard bytes.count >= ProtocolConstants.simpleReplyHeaderSize else {
                return .needMore(ProtocolConstants.simpleReplyHeaderSize)
            }
            let error = bytes.uint32(at: 4)
            let cookie = bytes.uint64(at: 8)
            guard let request = lookup(cookie) else { throw Self.unknownCookie(cookie) }
            let payload = error == 0 && request.command == .read ? Int(request.length) : 0
            return .event(
                .simple(cookie: cookie, error: error), consumed: ProtocolConstants.simpleReplyHeaderSize,
                payload: payload)
        case ProtocolConstants.structuredReplyMagic:
            guard !extendedHeaders else {
                throw Self.violation("a compact structured reply chunk, although extended headers were negotiated")
            }
            guard structuredReplies else {
                throw Self.violation("a structured reply chunk, although structured replies were not negotiated")
            }
            let header = ProtocolConstants.structuredReplyHeaderSize
            guard bytes.count >= header else { return .needMore(header) }
            let cookie = bytes.uint64(at: 8)
            guard let request = lookup(cookie) else { throw Self.unknownCookie(cookie) }
            let chunk = Chunk(
                header: header, flags: bytes.uint16(at: 4), type: bytes.uint16(at: 6), cookie: cookie,
                length: Int(bytes.uint32(at: 16)), request: request)
            return try parseChunk(chunk, bytes)
        case ProtocolConstants.extendedReplyMagic:
            guard extendedHeaders else {
                throw Self.violation("an extended reply header, although extended headers were not negotiated")
            }
            let header = ProtocolConstants.extendedReplyHeaderSize
            guard bytes.count >= header else { return .needMore(header) }
            let cookie = bytes.uint64(at: 8)
            guard let request = lookup(cookie) else { throw Self.unknownCookie(cookie) }
            let offset = bytes.uint64(at: 16)
            guard offset == request.offset else {
                throw Self.violation(
                    "an extended reply with offset \(offset) to the \(request.command) at offset \(request.offset) (they must match)"
                )
            }
            // Reply payloads are bounded by the 32-bit block size limits; a longer one is garbage.
            let length = bytes.uint64(at: 24)
            guard length <= UInt64(UInt32.max) else {
                throw Self.violation("an extended reply with a payload of \(length) bytes (more than 32 bits)")
            }
            let chunk = Chunk(
                header: header, flags: bytes.uint16(at: 4), type: bytes.uint16(at: 6), cookie: cookie,
                length: Int(length), request: request)
            return try parseChunk(chunk, bytes)
        case let magic:
            throw Self.violation("a reply with bad magic 0x\(String(magic, radix: 16))")
        }
    }

    /// A structured or extended chunk header, decoded.
    private struct Chunk {
        /// The header size: 20 (structured) or 32 (extended).
        var header: Int
        var flags: UInt16
        var type: UInt16
        var cookie: UInt64
        /// The payload length, at most `UInt32.max`.
        var length: Int
        var request: RequestRecord
    }

    private func parseChunk(_ chunk: Chunk, _ bytes: UnsafeRawBufferPointer) throws(NBDError) -> Outcome {
        let header = chunk.header
        let length = chunk.length
        let cookie = chunk.cookie
        let request = chunk.request
        let done = chunk.flags & ChunkType.flagDone != 0

        switch chunk.type {
        case ChunkType.none:
            guard length == 0 else { throw Self.violation("an NBD_REPLY_TYPE_NONE chunk with \(length) payload bytes") }
            guard done else { throw Self.violation("an NBD_REPLY_TYPE_NONE chunk without the DONE flag") }
            return .event(.none(cookie: cookie), consumed: header, payload: 0)

        case ChunkType.offsetData:
            guard request.command == .read else {
                throw Self.violation("a data chunk in reply to a \(request.command)")
            }
            guard length > 8 else { throw Self.violation("a data chunk of \(length) bytes (at least 9 are needed)") }
            guard bytes.count >= header + 8 else { return .needMore(header + 8) }
            let count = length - 8
            let position = try Self.position(
                of: bytes.uint64(at: header), count: UInt64(count), in: request, what: "data chunk")
            return .event(
                .data(cookie: cookie, position: position, count: count, done: done), consumed: header + 8,
                payload: count)

        case ChunkType.offsetHole:
            guard request.command == .read else {
                throw Self.violation("a hole chunk in reply to a \(request.command)")
            }
            // The hole size stays 32 bits with extended headers too.
            guard length == 12 else { throw Self.violation("a hole chunk of \(length) bytes (12 expected)") }
            guard bytes.count >= header + 12 else { return .needMore(header + 12) }
            let count = bytes.uint32(at: header + 8)
            guard count > 0 else { throw Self.violation("a hole chunk of length 0") }
            let position = try Self.position(
                of: bytes.uint64(at: header), count: UInt64(count), in: request, what: "hole chunk")
            return .event(
                .hole(cookie: cookie, position: position, count: Int(count), done: done), consumed: header + 12,
                payload: 0)

        case ChunkType.blockStatus:
            guard !extendedHeaders else {
                throw Self.violation(
                    "a 32-bit block status chunk (NBD_REPLY_TYPE_BLOCK_STATUS), although extended headers were negotiated"
                )
            }
            return try parseBlockStatus(chunk, bytes, done: done, prefix: 4, descriptor: 8)

        case ChunkType.blockStatusExtended:
            guard extendedHeaders else {
                throw Self.violation(
                    "a 64-bit block status chunk (NBD_REPLY_TYPE_BLOCK_STATUS_EXT), although extended headers were not negotiated"
                )
            }
            return try parseBlockStatus(chunk, bytes, done: done, prefix: 8, descriptor: 16)

        default:
            let type = chunk.type
            guard type & ChunkType.errorBit != 0 else {
                throw Self.violation("a chunk of unknown type \(type)")
            }
            let trailer = type == ChunkType.errorOffset ? 8 : 0
            guard length >= 6 + trailer else { throw Self.violation("an error chunk of \(length) bytes") }
            guard length <= 6 + ProtocolConstants.maximumErrorMessage + 8 else {
                throw Self.violation("an error chunk of \(length) bytes (the message may be at most 4096)")
            }
            guard bytes.count >= header + length else { return .needMore(header + length) }
            let errno = bytes.uint32(at: header)
            guard errno != 0 else { throw Self.violation("an error chunk with error value 0") }
            let messageLength = Int(bytes.uint16(at: header + 4))
            guard messageLength <= ProtocolConstants.maximumErrorMessage else {
                throw Self.violation("an error message of \(messageLength) bytes (at most 4096 allowed)")
            }
            let exact = type == ChunkType.error || type == ChunkType.errorOffset
            guard exact ? 6 + messageLength + trailer == length : 6 + messageLength <= length else {
                throw Self.violation("an error message of \(messageLength) bytes in a chunk of \(length) bytes")
            }
            if type == ChunkType.errorOffset {
                let offset = bytes.uint64(at: header + 6 + messageLength)
                _ = try Self.position(of: offset, count: 1, in: request, what: "error offset")
            }
            let message = String(
                decoding: UnsafeRawBufferPointer(rebasing: bytes[(header + 6)..<(header + 6 + messageLength)]),
                as: UTF8.self)
            return .event(
                .error(cookie: cookie, errno: errno, message: message, done: done), consumed: header + length,
                payload: 0)
        }
    }

    /// A block status chunk in either form: `NBD_REPLY_TYPE_BLOCK_STATUS` (a 4-byte context id, then
    /// 8-byte descriptors of a 32-bit length and 32-bit flags) or `NBD_REPLY_TYPE_BLOCK_STATUS_EXT`
    /// (context id and a descriptor count, then 16-byte descriptors of 64-bit length and flags).
    private func parseBlockStatus(
        _ chunk: Chunk, _ bytes: UnsafeRawBufferPointer, done: Bool, prefix: Int, descriptor: Int
    ) throws(NBDError) -> Outcome {
        let header = chunk.header
        let length = chunk.length
        let request = chunk.request
        let extended = descriptor == 16
        guard request.command == .blockStatus else {
            throw Self.violation("a block status chunk in reply to a \(request.command)")
        }
        guard length >= prefix + descriptor, (length - prefix) % descriptor == 0 else {
            throw Self.violation(
                "a block status chunk of \(length) bytes (\(prefix) + \(descriptor) per extent expected)")
        }
        guard length <= maximumMetadataChunk else {
            throw Self.violation("a block status chunk of \(length) bytes (at most \(maximumMetadataChunk) accepted)")
        }
        guard bytes.count >= header + length else { return .needMore(header + length) }
        let context = bytes.uint32(at: header)
        guard let allocationContextID, context == allocationContextID else {
            throw Self.violation("block status for context id \(context), which was not negotiated")
        }
        if extended {
            let count = bytes.uint32(at: header + 4)
            guard Int(count) == (length - prefix) / descriptor else {
                throw Self.violation(
                    "a block status chunk whose descriptor count \(count) disagrees with its \(length) bytes")
            }
        }
        var extents: [Extent] = []
        var described: UInt64 = 0
        var position = header + prefix
        while position < header + length && described < request.length {
            let extentLength: UInt64
            let rawFlags: UInt64
            if extended {
                extentLength = bytes.uint64(at: position)
                rawFlags = bytes.uint64(at: position + 8)
            } else {
                extentLength = UInt64(bytes.uint32(at: position))
                rawFlags = UInt64(bytes.uint32(at: position + 4))
            }
            guard extentLength > 0 else { throw Self.violation("a block status extent of length 0") }
            // base:allocation is a 32-bit context: the high half of a 64-bit status must be zero.
            guard rawFlags >> 32 == 0 else {
                throw Self.violation("a base:allocation status 0x\(String(rawFlags, radix: 16)) wider than 32 bits")
            }
            let extentFlags = Extent.Flags(rawValue: UInt32(rawFlags))
            // The final extent may reach past the request; the client sees only what it asked for.
            let clipped = min(extentLength, request.length - described)
            extents.append(Extent(length: clipped, flags: extentFlags.intersection([.hole, .zero])))
            described += clipped
            position += descriptor
            if request.flags.contains(.requestOne) { break }
        }
        return .event(
            .blockStatus(cookie: chunk.cookie, extents: extents, done: done), consumed: header + length, payload: 0)
    }

    /// The position within the request of `count` bytes at absolute `offset`, or a violation when
    /// they do not lie inside it.
    private static func position(of offset: UInt64, count: UInt64, in request: RequestRecord, what: String)
        throws(NBDError) -> Int
    {
        let (sum, overflow) = request.offset.addingReportingOverflow(UInt64(request.length))
        let end = overflow ? UInt64.max : sum
        guard offset >= request.offset, offset <= end, count <= end - offset else {
            throw violation(
                "a \(what) for \(count) bytes at offset \(offset), outside the request (\(request.length) bytes at \(request.offset))"
            )
        }
        return Int(offset - request.offset)
    }

    private static func unknownCookie(_ cookie: UInt64) -> NBDError {
        violation("a reply to cookie 0x\(String(cookie, radix: 16)), which no request in flight has")
    }

    /// The error that closes a connection whose server broke the protocol.
    package static func violation(_ what: String) -> NBDError {
        NBDError(.ioError, "NBD server protocol violation: the server sent \(what); connection closed")
    }
}

import NBDCore

/// What a client remembers about a request it sent, enough to check the server's replies to it.
package struct RequestRecord: Sendable, Hashable {
    /// The command.
    package var command: Command
    /// The request's offset.
    package var offset: UInt64
    /// The request's length (for a write, the payload size).
    package var length: UInt32
    /// The command flags sent.
    package var flags: CommandFlags

    package init(command: Command, offset: UInt64, length: UInt32, flags: CommandFlags) {
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
    /// `NBD_REPLY_TYPE_BLOCK_STATUS` for `base:allocation`, already clipped to the request.
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

/// Decodes NBD transmission replies (simple replies and structured reply chunks) from bytes and checks
/// each against the request it answers. Pure: no I/O and no state of its own, so it can be fuzzed
/// (`Fuzz/ClientReplies`) and every malformed case tested byte for byte.
///
/// Data payloads are not part of the decoded event: the caller reads them straight into the
/// request's buffer, so a 1 MiB read is copied once. Every other payload (holes, block status,
/// errors) must be complete in the bytes given, and is bounded by ``maximumMetadataChunk``.
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

    /// Whether structured replies were negotiated.
    package var structuredReplies: Bool
    /// The id the server gave `base:allocation`, if it was negotiated.
    package var allocationContextID: UInt32?
    /// The longest non-data chunk payload accepted (block status, errors). It must fit in the
    /// caller's receive buffer with the chunk header.
    package var maximumMetadataChunk: Int

    package init(structuredReplies: Bool, allocationContextID: UInt32?, maximumMetadataChunk: Int = 256 << 10) {
        self.structuredReplies = structuredReplies
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
            guard bytes.count >= ProtocolConstants.simpleReplyHeaderSize else {
                return .needMore(ProtocolConstants.simpleReplyHeaderSize)
            }
            let error = bytes.uint32(at: 4)
            let cookie = bytes.uint64(at: 8)
            guard let request = lookup(cookie) else { throw Self.unknownCookie(cookie) }
            let payload = error == 0 && request.command == .read ? Int(request.length) : 0
            return .event(
                .simple(cookie: cookie, error: error), consumed: ProtocolConstants.simpleReplyHeaderSize, payload: payload)
        case ProtocolConstants.structuredReplyMagic:
            guard structuredReplies else {
                throw Self.violation("a structured reply chunk, although structured replies were not negotiated")
            }
            return try parseChunk(bytes, lookup: lookup)
        case let magic:
            throw Self.violation("a reply with bad magic 0x\(String(magic, radix: 16))")
        }
    }

    private func parseChunk(_ bytes: UnsafeRawBufferPointer, lookup: (UInt64) -> RequestRecord?) throws(NBDError)
        -> Outcome
    {
        let header = ProtocolConstants.structuredReplyHeaderSize
        guard bytes.count >= header else { return .needMore(header) }
        let flags = bytes.uint16(at: 4)
        let type = bytes.uint16(at: 6)
        let cookie = bytes.uint64(at: 8)
        let length = Int(bytes.uint32(at: 16))
        let done = flags & ChunkType.flagDone != 0
        guard let request = lookup(cookie) else { throw Self.unknownCookie(cookie) }

        switch type {
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
            guard request.command == .blockStatus else {
                throw Self.violation("a block status chunk in reply to a \(request.command)")
            }
            guard length >= 12, (length - 4) % 8 == 0 else {
                throw Self.violation("a block status chunk of \(length) bytes (4 + 8 per extent expected)")
            }
            guard length <= maximumMetadataChunk else {
                throw Self.violation(
                    "a block status chunk of \(length) bytes (at most \(maximumMetadataChunk) accepted)")
            }
            guard bytes.count >= header + length else { return .needMore(header + length) }
            let context = bytes.uint32(at: header)
            guard let allocationContextID, context == allocationContextID else {
                throw Self.violation("block status for context id \(context), which was not negotiated")
            }
            var extents: [Extent] = []
            var described: UInt64 = 0
            var position = header + 4
            while position < header + length && described < UInt64(request.length) {
                let extentLength = UInt64(bytes.uint32(at: position))
                let extentFlags = Extent.Flags(rawValue: bytes.uint32(at: position + 4))
                guard extentLength > 0 else { throw Self.violation("a block status extent of length 0") }
                // The final extent may reach past the request; the client sees only what it asked for.
                let clipped = min(extentLength, UInt64(request.length) - described)
                extents.append(Extent(length: clipped, flags: extentFlags.intersection([.hole, .zero])))
                described += clipped
                position += 8
                if request.flags.contains(.requestOne) { break }
            }
            return .event(
                .blockStatus(cookie: cookie, extents: extents, done: done), consumed: header + length, payload: 0)

        default:
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

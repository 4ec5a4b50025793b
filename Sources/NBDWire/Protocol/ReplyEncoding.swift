import NBDCore

/// Builders for the NBD messages the server sends, appended to a connection's output buffer.
extension OutputBuffer {
    /// An option reply: magic, option, reply type, length, data.
    package mutating func appendOptionReply(
        option: UInt32, type: UInt32, data: UnsafeRawBufferPointer = .init(start: nil, count: 0)
    ) {
        append(ProtocolConstants.optionReplyMagic)
        append(option)
        append(type)
        append(UInt32(data.count))
        append(data)
    }

    /// An option error reply with a human-readable message (clients show it to the user).
    package mutating func appendOptionError(option: UInt32, type: UInt32, message: String) {
        var text = String(decoding: message.utf8.prefix(4096), as: UTF8.self)
        text.withUTF8 { appendOptionReply(option: option, type: type, data: UnsafeRawBufferPointer($0)) }
    }

    /// A simple reply header. A successful read's data follows it.
    package mutating func appendSimpleReply(cookie: UInt64, error: UInt32) {
        append(ProtocolConstants.simpleReplyMagic)
        append(error)
        append(cookie)
    }

    /// A structured reply chunk header; `length` is the length of the chunk's payload.
    package mutating func appendChunkHeader(cookie: UInt64, flags: UInt16, type: UInt16, length: UInt32) {
        append(ProtocolConstants.structuredReplyMagic)
        append(flags)
        append(type)
        append(cookie)
        append(length)
    }

    /// The error reply for `error`: with structured replies negotiated, an `NBD_REPLY_TYPE_ERROR` chunk
    /// carrying the message (the protocol requires it for reads and prefers it for everything, so the
    /// client can show the message); otherwise a simple reply. The errno is mapped with
    /// `NBDError.Code.wireValue(for:)`.
    package mutating func appendErrorReply(cookie: UInt64, error: NBDError, flags: CommandFlags, structured: Bool) {
        let wire = error.code.wireValue(for: flags)
        guard structured else {
            appendSimpleReply(cookie: cookie, error: wire)
            return
        }
        let message = Array(error.message.utf8.prefix(1024))
        appendChunkHeader(
            cookie: cookie, flags: ChunkType.flagDone, type: ChunkType.error, length: UInt32(6 + message.count))
        append(wire)
        append(UInt16(message.count))
        message.withUnsafeBytes { append($0) }
    }
}

/// How a connection's transmission-phase replies are framed, as the handshake settled it.
package enum ReplyFraming: Sendable, Hashable {
    /// Simple replies only (neither structured replies nor extended headers were negotiated).
    case simple
    /// `NBD_OPT_STRUCTURED_REPLY`: 20-byte chunk headers; simple replies for replies without data.
    case structured
    /// `NBD_OPT_EXTENDED_HEADERS`: every reply, with or without data, is a 32-byte extended chunk
    /// header that echoes the request's offset.
    case extended

    /// Whether data-carrying replies are chunks (structured or extended).
    package var isStructured: Bool { self != .simple }

    /// The size of one reply chunk header.
    package var chunkHeaderSize: Int {
        self == .extended ? ProtocolConstants.extendedReplyHeaderSize : ProtocolConstants.structuredReplyHeaderSize
    }
}

/// Builders for replies in every framing.
extension OutputBuffer {
    /// An extended reply header (`NBD_EXTENDED_REPLY_MAGIC`); `offset` is the request's, `length`
    /// the length of the chunk's payload.
    package mutating func appendExtendedChunkHeader(
        cookie: UInt64, flags: UInt16, type: UInt16, offset: UInt64, length: UInt64
    ) {
        append(ProtocolConstants.extendedReplyMagic)
        append(flags)
        append(type)
        append(cookie)
        append(offset)
        append(length)
    }

    /// A chunk header in `framing` (structured or extended; `offset` is the request's and used
    /// only by the extended form).
    package mutating func appendChunkHeader(
        framing: ReplyFraming, cookie: UInt64, flags: UInt16, type: UInt16, offset: UInt64, length: UInt32
    ) {
        if framing == .extended {
            appendExtendedChunkHeader(cookie: cookie, flags: flags, type: type, offset: offset, length: UInt64(length))
        } else {
            appendChunkHeader(cookie: cookie, flags: flags, type: type, length: length)
        }
    }

    /// Sets the payload length of the chunk header that starts at `mark` (written by
    /// ``appendChunkHeader(framing:cookie:flags:type:offset:length:)``).
    package mutating func setChunkLength(_ length: UInt32, framing: ReplyFraming, headerAt mark: Int) {
        if framing == .extended {
            set(UInt64(length), at: mark + 24)
        } else {
            set(length, at: mark + 16)
        }
    }

    /// The success reply of a request without reply data: a simple reply, or with extended
    /// headers (where simple replies are forbidden) an `NBD_REPLY_TYPE_NONE` chunk with `DONE`.
    package mutating func appendSuccessReply(cookie: UInt64, offset: UInt64, framing: ReplyFraming) {
        if framing == .extended {
            appendExtendedChunkHeader(
                cookie: cookie, flags: ChunkType.flagDone, type: ChunkType.none, offset: offset, length: 0)
        } else {
            appendSimpleReply(cookie: cookie, error: 0)
        }
    }

    /// The error reply for `error` in `framing` (see
    /// ``appendErrorReply(cookie:error:flags:structured:)``; with extended headers an extended
    /// error chunk).
    package mutating func appendErrorReply(
        cookie: UInt64, offset: UInt64, error: NBDError, flags: CommandFlags, framing: ReplyFraming
    ) {
        appendErrorReply(
            cookie: cookie, offset: offset, wireError: error.code.wireValue(for: flags), message: error.message,
            framing: framing)
    }

    /// An error reply with the wire error value `wireError` as it is (for the few places the protocol
    /// documents an error, such as `EOVERFLOW` for a read too large, that the general mapping of
    /// `NBDError.Code.wireValue(for:)` would change).
    package mutating func appendErrorReply(
        cookie: UInt64, offset: UInt64, wireError: UInt32, message: String, framing: ReplyFraming
    ) {
        guard framing.isStructured else {
            appendSimpleReply(cookie: cookie, error: wireError)
            return
        }
        let message = Array(message.utf8.prefix(1024))
        appendChunkHeader(
            framing: framing, cookie: cookie, flags: ChunkType.flagDone, type: ChunkType.error, offset: offset,
            length: UInt32(6 + message.count))
        append(wireError)
        append(UInt16(message.count))
        message.withUnsafeBytes { append($0) }
    }
}

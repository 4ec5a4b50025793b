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

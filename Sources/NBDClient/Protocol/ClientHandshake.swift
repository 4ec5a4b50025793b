import NBDCore
import NBDWire

/// The client side of the fixed newstyle handshake, blocking, on the connection's own thread.
///
/// Order: greeting and client flags; `NBD_OPT_STARTTLS` when asked for; `NBD_OPT_EXTENDED_HEADERS`,
/// and only if the server refuses it `NBD_OPT_STRUCTURED_REPLY` (extended headers imply structured
/// replies, and a server may refuse to go back to them: libnbd's order); `NBD_OPT_SET_META_CONTEXT`
/// for `base:allocation`; `NBD_OPT_GO` asking for `NBD_INFO_BLOCK_SIZE`, falling back to
/// `NBD_OPT_EXPORT_NAME` when the server does not know `GO` (never after extended headers, which
/// forbid it).
struct ClientHandshake: ~Copyable {
    /// The connection; replaced by its TLS form after `NBD_OPT_STARTTLS`.
    private(set) var socket: Socket
    var buffer: BufferedReader
    let endpoint: NBDEndpoint
    private(set) var fixedNewstyle = false
    private(set) var noZeroes = false
    /// Whether the server accepted `NBD_OPT_STARTTLS` and the TLS handshake succeeded.
    private(set) var usesTLS = false

    init(socket: Socket, endpoint: NBDEndpoint, bufferSize: Int) {
        self.socket = socket
        self.endpoint = endpoint
        self.buffer = BufferedReader(socket: socket, capacity: bufferSize)
    }

    private func failure(_ what: String) -> NBDError {
        NBDError(.ioError, "NBD handshake with \(endpoint) failed: \(what)")
    }

    private mutating func receive(_ count: Int) throws(NBDError) -> [UInt8] {
        guard count <= buffer.capacity, buffer.fill(atLeast: count) else {
            throw failure("the server closed the connection or did not answer")
        }
        let bytes = Array(UnsafeRawBufferPointer(rebasing: buffer.unread[0..<count]))
        buffer.consume(count)
        return bytes
    }

    private func send(_ bytes: [UInt8]) throws(NBDError) {
        let sent = bytes.withUnsafeBytes { socket.sendAll($0) }
        guard sent else { throw failure("the server closed the connection") }
    }

    /// Reads the greeting and sends the client flags.
    mutating func greet() throws(NBDError) {
        let greeting = try receive(16)
        let (magic, style) = greeting.withUnsafeBytes { ($0.uint64(at: 0), $0.uint64(at: 8)) }
        guard magic == ProtocolConstants.nbdMagic else {
            throw failure("this is not an NBD server (bad greeting magic)")
        }
        if style == ProtocolConstants.oldstyleMagic {
            throw failure("the server speaks the oldstyle protocol, which this client does not support")
        }
        guard style == ProtocolConstants.optionMagic else {
            throw failure("unknown handshake style 0x\(String(style, radix: 16))")
        }
        let flags = try receive(2).withUnsafeBytes { $0.uint16(at: 0) }
        fixedNewstyle = flags & ProtocolConstants.flagFixedNewstyle != 0
        noZeroes = flags & ProtocolConstants.flagNoZeroes != 0
        var clientFlags: UInt32 = 0
        if fixedNewstyle { clientFlags |= ProtocolConstants.clientFixedNewstyle }
        if noZeroes { clientFlags |= ProtocolConstants.clientNoZeroes }
        try send(Self.bigEndian(clientFlags))
    }

    /// `NBD_OPT_STARTTLS`, sent first after the greeting so that no option, export name or size
    /// crosses the network in clear text; then the TLS handshake, after which every byte goes
    /// through the session. With ``ClientTLSMode/on`` a server that answers `NBD_REP_ERR_UNSUP`
    /// or `NBD_REP_ERR_POLICY` is used in plaintext. Returns whether TLS is in use.
    mutating func startTLS(
        _ options: ClientTLSOptions?, provider: (any ClientTLSProvider)?, timeout: Duration?
    ) throws(NBDError) -> Bool {
        guard let options, options.mode != .off else { return false }
        guard let provider else {
            throw NBDError(
                .notSupported,
                "TLS to \(endpoint) needs a TLS provider: pass NBDTLSClient's GnuTLSClientProvider() as tlsProvider (NBDClient does not link GnuTLS)"
            )
        }
        guard fixedNewstyle else {
            if options.mode == .on { return false }
            throw NBDError(
                .notPermitted, "NBD server \(endpoint) cannot do TLS (it is not fixed newstyle) and TLS is required")
        }
        try sendOption(OptionCode.startTLS)
        let reply = try readReply(to: OptionCode.startTLS)
        if reply.type != OptionReply.ack {
            let refusal = reply.type == OptionReply.errUnsupported || reply.type == OptionReply.errPolicy
            if refusal && options.mode == .on { return false }
            let text = String(decoding: reply.payload, as: UTF8.self)
            throw NBDError(
                .notPermitted,
                "NBD server \(endpoint) refused NBD_OPT_STARTTLS (\(OptionReply.name(reply.type)))\(text.isEmpty ? "" : ": \(text)") and TLS is required"
            )
        }
        // The server must not have sent anything after its acknowledgement: it would be plaintext
        // injected ahead of the TLS handshake.
        guard buffer.unread.isEmpty else {
            throw failure("the server sent plaintext after acknowledging NBD_OPT_STARTTLS")
        }
        var hostname: String?
        if case .tcp(let host, _) = endpoint.transport { hostname = host }
        let session = try provider.startSession(
            descriptor: socket.descriptor, options: options, hostname: hostname, timeout: timeout)
        socket = socket.upgraded(to: session)
        buffer = BufferedReader(socket: socket, capacity: buffer.capacity)
        usesTLS = true
        return true
    }

    /// Sends an option.
    private func sendOption(_ code: UInt32, _ data: [UInt8] = []) throws(NBDError) {
        var bytes = Self.bigEndian(ProtocolConstants.optionMagic)
        bytes += Self.bigEndian(code)
        bytes += Self.bigEndian(UInt32(data.count))
        bytes += data
        try send(bytes)
    }

    /// Reads one option reply to `option`: its type and payload.
    private mutating func readReply(to option: UInt32) throws(NBDError) -> (type: UInt32, payload: [UInt8]) {
        let header = try receive(20)
        let (magic, echoed, type, length) = header.withUnsafeBytes {
            ($0.uint64(at: 0), $0.uint32(at: 8), $0.uint32(at: 12), $0.uint32(at: 16))
        }
        guard magic == ProtocolConstants.optionReplyMagic else { throw failure("bad option reply magic") }
        guard echoed == option else { throw failure("a reply to option \(echoed) when option \(option) was sent") }
        guard length <= ProtocolConstants.maximumOptionReply else {
            throw failure(
                "an option reply of \(length) bytes (at most \(ProtocolConstants.maximumOptionReply) accepted)")
        }
        return (type, try receive(Int(length)))
    }

    private func optionError(_ type: UInt32, _ payload: [UInt8], _ what: String) -> NBDError {
        let text = String(decoding: payload, as: UTF8.self)
        let detail = text.isEmpty ? "" : ": \(text)"
        let code: NBDError.Code = type == OptionReply.errUnknown ? .invalidArgument : .ioError
        return NBDError(code, "NBD server \(endpoint) refused \(what) (\(OptionReply.name(type)))\(detail)")
    }

    /// Asks for extended headers; returns whether the server agreed. Any error reply (a server that
    /// does not know the option answers `NBD_REP_ERR_UNSUP`) means compact headers.
    mutating func negotiateExtendedHeaders() throws(NBDError) -> Bool {
        guard fixedNewstyle else { return false }
        try sendOption(OptionCode.extendedHeaders)
        while true {
            let reply = try readReply(to: OptionCode.extendedHeaders)
            if reply.type == OptionReply.ack { return true }
            if reply.type & OptionReply.errorBit != 0 { return false }
        }
    }

    /// Extended headers, else structured replies, else neither, as `configuration` allows.
    mutating func negotiateReplyForm(_ configuration: ClientConfiguration) throws(NBDError)
        -> (structured: Bool, extended: Bool)
    {
        guard configuration.structuredReplies else { return (false, false) }
        if configuration.extendedHeaders, try negotiateExtendedHeaders() { return (true, true) }
        return (try negotiateStructuredReplies(), false)
    }

    /// Asks for structured replies; returns whether the server agreed.
    mutating func negotiateStructuredReplies() throws(NBDError) -> Bool {
        guard fixedNewstyle else { return false }
        try sendOption(OptionCode.structuredReply)
        while true {
            let reply = try readReply(to: OptionCode.structuredReply)
            if reply.type == OptionReply.ack { return true }
            if reply.type & OptionReply.errorBit != 0 { return false }
        }
    }

    /// Asks for `base:allocation` on `export`; returns its context id if the server agreed.
    mutating func negotiateAllocationContext(export: String) throws(NBDError) -> UInt32? {
        let query = Array("base:allocation".utf8)
        let name = Array(export.utf8)
        var data = Self.bigEndian(UInt32(name.count)) + name
        data += Self.bigEndian(UInt32(1))
        data += Self.bigEndian(UInt32(query.count)) + query
        try sendOption(OptionCode.setMetaContext, data)
        var contextID: UInt32?
        while true {
            let reply = try readReply(to: OptionCode.setMetaContext)
            if reply.type == OptionReply.ack { return contextID }
            if reply.type & OptionReply.errorBit != 0 { return nil }
            if reply.type == OptionReply.metaContext, reply.payload.count >= 4 {
                let id = reply.payload.withUnsafeBytes { $0.uint32(at: 0) }
                if Array(reply.payload[4...]) == query { contextID = id }
            }
        }
    }

    /// `NBD_OPT_GO` (or `NBD_OPT_INFO` when `enter` is false) for `export`, asking for block sizes.
    /// Returns `nil` when the server does not support the option (the caller falls back).
    mutating func go(export: String, enter: Bool) throws(NBDError) -> ExportInfo? {
        let option = enter ? OptionCode.go : OptionCode.info
        let name = Array(export.utf8)
        var data = Self.bigEndian(UInt32(name.count)) + name
        data += Self.bigEndian(UInt16(1))
        data += Self.bigEndian(InfoType.blockSize)
        try sendOption(option, data)
        var size: UInt64?
        var flags: UInt16 = 0
        var blockSize: BlockSizeConstraints?
        while true {
            let reply = try readReply(to: option)
            switch reply.type {
            case OptionReply.ack:
                guard let size else { throw failure("the server acknowledged the export without sending its size") }
                return ExportInfo(name: export, size: size, transmissionFlags: flags, blockSize: blockSize)
            case OptionReply.info:
                guard reply.payload.count >= 2 else { throw failure("an empty NBD_REP_INFO") }
                reply.payload.withUnsafeBytes { bytes in
                    let type = bytes.uint16(at: 0)
                    if type == InfoType.export, bytes.count >= 12 {
                        size = bytes.uint64(at: 2)
                        flags = bytes.uint16(at: 10)
                    } else if type == InfoType.blockSize, bytes.count >= 14 {
                        blockSize = BlockSizeConstraints(
                            minimum: bytes.uint32(at: 2), preferred: bytes.uint32(at: 6),
                            maximumPayload: bytes.uint32(at: 10))
                    }
                }
            case OptionReply.errUnsupported:
                return nil
            case let type where type & OptionReply.errorBit != 0:
                throw optionError(type, reply.payload, "export '\(export)'")
            default:
                continue
            }
        }
    }

    /// `NBD_OPT_EXPORT_NAME`: enters transmission; the server closes the connection if the export
    /// does not exist.
    mutating func exportName(_ export: String) throws(NBDError) -> ExportInfo {
        try sendOption(OptionCode.exportName, Array(export.utf8))
        let reply: [UInt8]
        do {
            reply = try receive(10 + (noZeroes ? 0 : 124))
        } catch {
            throw NBDError(
                .invalidArgument,
                "NBD server \(endpoint) closed the connection when asked for export '\(export)' (it may not exist)")
        }
        let (size, flags) = reply.withUnsafeBytes { ($0.uint64(at: 0), $0.uint16(at: 8)) }
        return ExportInfo(name: export, size: size, transmissionFlags: flags)
    }

    /// `NBD_OPT_LIST`.
    mutating func list() throws(NBDError) -> [ExportListing] {
        guard fixedNewstyle else { throw failure("the server does not support listing exports (not fixed newstyle)") }
        try sendOption(OptionCode.list)
        var exports: [ExportListing] = []
        while true {
            let reply = try readReply(to: OptionCode.list)
            switch reply.type {
            case OptionReply.ack:
                return exports
            case OptionReply.server:
                guard reply.payload.count >= 4 else { throw failure("a short NBD_REP_SERVER") }
                let length = Int(reply.payload.withUnsafeBytes { $0.uint32(at: 0) })
                guard length <= reply.payload.count - 4 else { throw failure("an export name longer than its reply") }
                exports.append(
                    ExportListing(
                        name: String(decoding: reply.payload[4..<(4 + length)], as: UTF8.self),
                        description: String(decoding: reply.payload[(4 + length)...], as: UTF8.self)))
            case let type where type & OptionReply.errorBit != 0:
                throw optionError(type, reply.payload, "the export list")
            default:
                continue
            }
        }
    }

    /// `NBD_OPT_ABORT`: ends the handshake politely. The server's answer is not awaited.
    func abort() {
        try? sendOption(OptionCode.abort)
    }

    /// The whole negotiation for a connection that will transmit.
    mutating func negotiate(
        export: String, configuration: ClientConfiguration, tlsProvider: (any ClientTLSProvider)?
    ) throws(NBDError) -> ExportInfo {
        try greet()
        let secure = try startTLS(endpoint.tls, provider: tlsProvider, timeout: configuration.handshakeTimeout)
        if configuration.useExportNameOption || !fixedNewstyle {
            var info = try exportName(export)
            info.usesTLS = secure
            return info
        }
        let (structured, extended) = try negotiateReplyForm(configuration)
        let context = structured && configuration.blockStatus ? try negotiateAllocationContext(export: export) : nil
        var info: ExportInfo
        if let answer = try go(export: export, enter: true) {
            info = answer
        } else if extended {
            // The protocol requires NBD_OPT_GO of a server that accepts extended headers.
            throw failure("the server accepted extended headers but does not support NBD_OPT_GO")
        } else {
            info = try exportName(export)
        }
        info.structuredReplies = structured
        info.extendedHeaders = extended
        info.allocationContextID = context
        info.usesTLS = secure
        return info
    }

    static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }
}

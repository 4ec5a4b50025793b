import NBDCore
import NBDWire

/// The fixed-newstyle handshake and option haggling for one connection, run on the connection's
/// thread before transmission.
///
/// The backend stack is opened at `NBD_OPT_INFO`/`NBD_OPT_GO` (or `NBD_OPT_EXPORT_NAME`) time. If
/// opening fails, the client gets `NBD_REP_ERR_UNKNOWN` (or a better-fitting error) with the message,
/// and haggling continues, as nbdkit does; a backend opened only for `NBD_OPT_INFO` is closed again.
struct Handshake<Provider: BackendProvider> {
    let provider: Provider
    let configuration: ServerConfiguration
    let connectionID: UInt64
    /// The connection's socket: the plaintext one, or after `NBD_OPT_STARTTLS` the secure one the
    /// connection must use from then on.
    private(set) var socket: Socket
    let acceptsMultipleConnections: Bool
    let isShuttingDown: @Sendable () -> Bool

    /// The largest payload the server ever accepts, whatever the backend and configuration allow.
    static var payloadCeiling: UInt32 { 1 << 30 }

    /// A client that haggles longer than this is dropped (real clients send a handful of options).
    static var maximumOptions: Int { 1024 }

    private var structuredReplies = false
    /// Whether `NBD_OPT_EXTENDED_HEADERS` was acknowledged (which implies structured replies).
    private var extendedHeaders = false
    private var baseAllocation = false
    private var noZeroes = false
    /// Whether a refusal for want of TLS was already reported to the operator (once per connection).
    private var reportedMissingTLS = false
    /// Where the client connected from, looked up once.
    /// The client's address (and credentials on a Unix socket), looked up once.
    let peer: PeerAddress?

    init(
        provider: Provider, configuration: ServerConfiguration, connectionID: UInt64, socket: Socket,
        acceptsMultipleConnections: Bool, isShuttingDown: @escaping @Sendable () -> Bool
    ) {
        self.provider = provider
        self.configuration = configuration
        self.connectionID = connectionID
        self.socket = socket
        self.acceptsMultipleConnections = acceptsMultipleConnections
        self.isShuttingDown = isShuttingDown
        self.peer = PeerLookup.peer(of: socket.descriptor)
    }

    /// The connection's facts for the provider, with `name` as the export name.
    private func connectionInfo(exportName name: String = "") -> ConnectionInfo {
        ConnectionInfo(
            id: connectionID, exportName: name, isReadOnly: configuration.isReadOnly, peer: peer,
            isTLS: socket.isSecure)
    }

    /// The option error reply that fits `error`, as nbdkit chooses it: a policy refusal for
    /// `EPERM`, a shutdown for `ESHUTDOWN`, otherwise unknown.
    private func optionErrorType(for error: NBDError) -> UInt32 {
        switch error.code {
        case .shutdown: return OptionReply.errShutdown
        case .notPermitted: return OptionReply.errPolicy
        default: return OptionReply.errUnknown
        }
    }

    /// Reports a problem an operator should see (see ``ServerConfiguration/errorLogger``).
    private func warn(_ message: @autoclosure () -> String) {
        event(.message, .error, message())
    }

    /// Reports a problem of a known kind an operator should see.
    private func warn(
        _ kind: ServerEvent.Kind, _ message: @autoclosure () -> String, _ extra: [String: String] = [:]
    ) {
        event(kind, .error, message(), extra)
    }

    private func log(_ message: @autoclosure () -> String) {
        event(.message, .debug, message())
    }

    /// Emits an event about this connection (metadata `connection` and `peer` plus `extra`).
    private func event(
        _ kind: ServerEvent.Kind, _ level: ServerEvent.Level, _ message: @autoclosure () -> String,
        _ extra: [String: String] = [:]
    ) {
        let id = connectionID
        let peer = self.peer
        configuration.emit(kind, level, message(), Self.metadata(connection: id, peer: peer, extra))
    }

    /// An event's metadata about connection `id` from `peer`, with `extra`.
    static func metadata(connection id: UInt64, peer: PeerAddress?, _ extra: [String: String]) -> [String: String] {
        var metadata = extra
        metadata["connection"] = String(id)
        if let peer {
            metadata["peer"] = peer.description
            if let credentials = peer.credentials {
                metadata["peer-pid"] = String(credentials.pid)
                metadata["peer-uid"] = String(credentials.uid)
            }
        }
        return metadata
    }

    /// Runs the handshake. Returns the negotiated export, or `nil` when the connection should close
    /// (the client aborted or disconnected, or broke the protocol).
    mutating func run(reader: inout BufferedReader, output: inout OutputBuffer) async -> NegotiatedExport<
        Provider.Backend
    >? {
        do {
            try await provider.preconnect(connectionInfo())
        } catch {
            // As nbdkit: a client refused before the handshake gets no reply, only a closed socket.
            warn(
                .handshakeRefused, "refused the client before the handshake: \(error.message)",
                ["reason": "preconnect", "errno": error.code.name])
            return nil
        }
        output.removeAll()
        output.append(ProtocolConstants.nbdMagic)
        output.append(ProtocolConstants.optionMagic)
        output.append(ProtocolConstants.flagFixedNewstyle | ProtocolConstants.flagNoZeroes)
        guard send(&output) else { return nil }

        guard reader.fill(atLeast: 4) else { return nil }
        let clientFlags = UInt32(bigEndian: reader.unread.loadUnaligned(as: UInt32.self))
        reader.consume(4)
        let known = ProtocolConstants.clientFixedNewstyle | ProtocolConstants.clientNoZeroes
        guard clientFlags & ~known == 0 else {
            // The protocol requires dropping a client that sets flags the server did not offer.
            event(.handshakeRefused, .notice, "unknown client flags 0x\(String(clientFlags, radix: 16)); disconnecting", ["reason": "client flags"])
            return nil
        }
        noZeroes = clientFlags & ProtocolConstants.clientNoZeroes != 0

        var optionCount = 0
        while true {
            optionCount += 1
            guard optionCount <= Self.maximumOptions else {
                event(.handshakeRefused, .notice, "more than \(Self.maximumOptions) options; disconnecting", ["reason": "too many options"])
                return nil
            }
            guard reader.fill(atLeast: 16) else { return nil }
            let header = reader.unread
            let magic = UInt64(bigEndian: header.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let option = UInt32(bigEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let length = UInt32(bigEndian: header.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            reader.consume(16)
            guard magic == ProtocolConstants.optionMagic else {
                event(.handshakeRefused, .notice, "bad option magic 0x\(String(magic, radix: 16)); disconnecting", ["reason": "option magic"])
                return nil
            }
            guard length <= configuration.maximumOptionLength else {
                log(
                    "option \(option) has \(length) bytes of data, above the limit \(configuration.maximumOptionLength); disconnecting"
                )
                return nil
            }
            var bytes = [UInt8](repeating: 0, count: Int(length))
            let complete = bytes.withUnsafeMutableBytes { reader.read(into: $0) }
            guard complete else { return nil }
            let data = OptionData(bytes)

            output.removeAll()
            if configuration.tls == .require && !socket.isSecure && option != OptionCode.startTLS
                && option != OptionCode.abort
            {
                // Nothing about the export may be sent in clear text: refuse before looking at it.
                guard option != OptionCode.exportName else {
                    warn(
                        .tlsRefused,
                        "refused a plaintext client: it sent NBD_OPT_EXPORT_NAME without NBD_OPT_STARTTLS and the server requires TLS (--tls=require); disconnecting"
                    )
                    return nil
                }
                if !reportedMissingTLS {
                    reportedMissingTLS = true
                    warn(
                        .tlsRefused,
                        "refused option \(option) from a plaintext client with NBD_REP_ERR_TLS_REQD: the server requires TLS (--tls=require); the client must connect with TLS (an nbds:// URI, or tls-creds)"
                    )
                }
                output.appendOptionError(
                    option: option, type: OptionReply.errTLSRequired,
                    message: "this server requires TLS: send NBD_OPT_STARTTLS first")
                guard send(&output) else { return nil }
                continue
            }
            switch option {
            case OptionCode.exportName:
                // The protocol forbids EXPORT_NAME after extended headers (its reply cannot say the
                // client must use them) and it has no error reply: the only answer is to disconnect.
                guard !extendedHeaders else {
                    event(
                        .protocolViolation, .notice,
                        "NBD_OPT_EXPORT_NAME after NBD_OPT_EXTENDED_HEADERS (the protocol requires NBD_OPT_GO); disconnecting",
                        ["reason": "export name after extended headers"])
                    return nil
                }
                // No error reply exists for EXPORT_NAME: failure means disconnecting.
                guard
                    let export = await open(
                        name: String(decoding: bytes, as: UTF8.self), option: option, output: &output)
                else {
                    return nil
                }
                output.removeAll()
                output.append(export.capabilities.size)
                output.append(flags(for: export.capabilities).rawValue)
                if !noZeroes {
                    _ = output.append(uninitialized: 124).initializeMemory(as: UInt8.self, repeating: 0)
                }
                guard send(&output) else {
                    await export.backend.close()
                    return nil
                }
                return export
            case OptionCode.abort:
                output.appendOptionReply(option: option, type: OptionReply.ack)
                _ = send(&output)
                return nil
            case OptionCode.list:
                guard length == 0 else {
                    output.appendOptionError(
                        option: option, type: OptionReply.errInvalid, message: "NBD_OPT_LIST takes no data")
                    break
                }
                // The stack's list (by default the default export alone); any name is still
                // accepted by NBD_OPT_GO, listed or not.
                var exports: [ExportEntry]
                do {
                    exports = try await provider.listExports(connectionInfo())
                    if exports.contains(where: { $0.name.isEmpty }) {
                        let defaultName = try await provider.defaultExport(connectionInfo())
                        for index in exports.indices where exports[index].name.isEmpty {
                            exports[index].name = defaultName
                        }
                    }
                } catch {
                    warn("cannot list the exports for the client: \(error)")
                    // As nbdkit: a list that cannot be made is NBD_REP_ERR_PLATFORM, whatever the cause.
                    output.appendOptionError(
                        option: option, type: OptionReply.errPlatform,
                        message: "cannot list the exports: \(error.message)")
                    break
                }
                for export in exports {
                    let description = export.description ?? configuration.exportDescription
                    var server = OutputBuffer(capacity: 64)
                    server.append(UInt32(truncatingIfNeeded: export.name.utf8.count))
                    server.append(export.name)
                    server.append(description)
                    output.appendOptionReply(option: option, type: OptionReply.server, data: server.bytes)
                }
                output.appendOptionReply(option: option, type: OptionReply.ack)
            case OptionCode.info, OptionCode.go:
                if let export = await infoOrGo(option: option, data: data, output: &output) {
                    guard send(&output) else {
                        await export.backend.close()
                        return nil
                    }
                    return export
                }
            case OptionCode.structuredReply:
                if !configuration.offersStructuredReplies {
                    log("structured replies are not offered")
                    output.appendOptionError(
                        option: option, type: OptionReply.errUnsupported,
                        message: "this server does not offer structured replies")
                } else if length != 0 {
                    output.appendOptionError(
                        option: option, type: OptionReply.errInvalid, message: "NBD_OPT_STRUCTURED_REPLY takes no data")
                } else if extendedHeaders {
                    // The protocol: extended headers take precedence; the server cannot go back.
                    output.appendOptionError(
                        option: option, type: OptionReply.errExtendedHeaderRequired,
                        message: "extended headers are already negotiated and take precedence over structured replies")
                } else {
                    structuredReplies = true
                    output.appendOptionReply(option: option, type: OptionReply.ack)
                }
            case OptionCode.extendedHeaders:
                if !configuration.offersExtendedHeaders || !configuration.offersStructuredReplies {
                    log("extended headers are not offered")
                    output.appendOptionError(
                        option: option, type: OptionReply.errUnsupported,
                        message: "this server does not offer extended headers")
                } else if length != 0 {
                    output.appendOptionError(
                        option: option, type: OptionReply.errInvalid, message: "NBD_OPT_EXTENDED_HEADERS takes no data")
                } else {
                    // Extended replies are structured: everything structured replies allow (meta
                    // contexts, DF) is allowed from now on.
                    extendedHeaders = true
                    structuredReplies = true
                    output.appendOptionReply(option: option, type: OptionReply.ack)
                }
            case OptionCode.listMetaContext, OptionCode.setMetaContext:
                metaContext(option: option, data: data, output: &output)
            case OptionCode.startTLS:
                guard configuration.tls != .off, let transport = configuration.secureTransport else {
                    // As nbdkit and qemu-nbd: the option is known, the server's policy is no TLS.
                    output.appendOptionError(
                        option: option, type: OptionReply.errPolicy, message: "TLS is not enabled on this server")
                    break
                }
                if length != 0 {
                    output.appendOptionError(
                        option: option, type: OptionReply.errInvalid, message: "NBD_OPT_STARTTLS takes no data")
                } else if socket.isSecure {
                    output.appendOptionError(
                        option: option, type: OptionReply.errInvalid, message: "TLS is already negotiated")
                } else {
                    output.appendOptionReply(option: option, type: OptionReply.ack)
                    guard send(&output), startTLS(transport, reader: &reader) else { return nil }
                    continue
                }
            default:
                log("unsupported option \(option)")
                output.appendOptionError(
                    option: option, type: OptionReply.errUnsupported, message: "option \(option) is not supported")
            }
            guard send(&output) else { return nil }
        }
    }

    /// Runs the TLS handshake after `NBD_OPT_STARTTLS` was acknowledged and switches the connection
    /// to the secure socket. Returns `false` (the connection closes) when the handshake fails.
    private mutating func startTLS(_ transport: any SecureTransport, reader: inout BufferedReader) -> Bool {
        // The protocol: whatever the client sent after NBD_OPT_STARTTLS, before the TLS handshake,
        // must not be acted on. Such bytes can only be an injection by someone in the middle (a real
        // client waits for the ACK), and the buffered reader may already hold them: a new reader
        // over the secure socket drops them unread.
        let injected = reader.buffered
        if injected > 0 {
            warn("discarded \(injected) bytes the client sent after NBD_OPT_STARTTLS before the TLS handshake")
        }
        let session: any SecureSession
        do {
            let configuration = self.configuration
            let id = connectionID
            session = try transport.startServerSession(
                descriptor: socket.descriptor, timeout: configuration.handshakeTimeout,
                reportProblem: { configuration.emit(.tlsRefused, .error, $0, ["connection": String(id)]) })
        } catch {
            warn(.tlsRefused, error.message)
            return false
        }
        if configuration.unixSocketSendBufferSize != nil {
            // The large send buffer helps plaintext reads and slows TLS clients (see the method).
            socket.resetUnixSendBufferSize()
        }
        socket = Socket(secure: SecureSessionAdapter(session), over: socket)
        reader = BufferedReader(socket: socket, capacity: reader.capacity)
        // The protocol: options negotiated before STARTTLS are forgotten and must be negotiated again
        // over TLS (an attacker could have sent them).
        structuredReplies = false
        extendedHeaders = false
        baseAllocation = false
        log("TLS session established")
        return true
    }

    private func send(_ output: inout OutputBuffer) -> Bool {
        defer { output.removeAll() }
        return socket.sendAll(output.bytes)
    }

    private func flags(for capabilities: Capabilities) -> TransmissionFlags {
        var flags = TransmissionFlags(
            capabilities: capabilities, structuredReplies: structuredReplies,
            acceptsMultipleConnections: acceptsMultipleConnections)
        // The payload form of block status (a list of context ids) exists only with extended headers,
        // and the protocol asks not to advertise it when no meta context was selected.
        if extendedHeaders && baseAllocation { flags.insert(.blockStatusPayload) }
        return flags
    }

    /// The limits the server enforces: the backend's, with the server's payload limit applied.
    private func effectiveCapabilities(_ backend: Provider.Backend) -> Capabilities {
        var caps = backend.capabilities
        if configuration.isReadOnly { caps = caps.readOnly }
        // 1 GiB at most whatever the settings say: a reply buffer is allocated per read and its chunk
        // length is 32 bits.
        let serverLimit = min(configuration.maximumPayload, Self.payloadCeiling)
        caps.blockSize.maximumPayload = min(caps.blockSize.maximumPayload, serverLimit)
        // A larger payload accepted than advertised (blocksize-policy's hint) stays within the
        // server's own limit too.
        if let accepted = caps.blockSize.enforcedMaximumPayload {
            caps.blockSize.enforcedMaximumPayload = max(min(accepted, serverLimit), caps.blockSize.maximumPayload)
        }
        caps.size = min(caps.size, UInt64(Int64.max))
        caps.blockSize.minimum = max(caps.blockSize.minimum, 1)
        caps.blockSize.preferred = max(caps.blockSize.preferred, caps.blockSize.minimum)
        return caps
    }

    /// Opens the stack for `name`. On failure appends the error reply (for INFO/GO) and returns nil.
    private func open(name: String, option: UInt32, output: inout OutputBuffer) async -> NegotiatedExport<
        Provider.Backend
    >? {
        if isShuttingDown() {
            output.appendOptionError(
                option: option, type: OptionReply.errShutdown, message: "the server is shutting down")
            return nil
        }
        var name = name
        do {
            if name.isEmpty {
                // As nbdkit: the default export is opened, and reported, under its canonical name.
                name = try await provider.defaultExport(connectionInfo())
            }
            let backend = try await provider.open(connectionInfo(exportName: name))
            let caps = effectiveCapabilities(backend)
            return NegotiatedExport(
                backend: backend, exportName: name, capabilities: caps,
                structuredReplies: structuredReplies, extendedHeaders: extendedHeaders,
                baseAllocation: baseAllocation && structuredReplies)
        } catch {
            warn(
                .exportOpenFailed, "cannot open export '\(name)' for the client: \(error)",
                ["export": name, "errno": error.code.name])
            output.appendOptionError(
                option: option, type: optionErrorType(for: error), message: "cannot open export '\(name)': \(error.message)")
            return nil
        }
    }

    /// Handles INFO and GO. Returns the export when GO succeeded; the replies are in `output`.
    private func infoOrGo(option: UInt32, data: OptionData, output: inout OutputBuffer) async -> NegotiatedExport<
        Provider.Backend
    >? {
        var data = data
        guard let name = data.readLengthPrefixedString(), let count = data.readUInt16(),
            data.remaining == Int(count) * 2
        else {
            output.appendOptionError(
                option: option, type: OptionReply.errInvalid, message: "malformed NBD_OPT_INFO/NBD_OPT_GO data")
            return nil
        }
        var requests: [UInt16] = []
        for _ in 0..<count {
            if let request = data.readUInt16() { requests.append(request) }
        }
        guard let export = await open(name: name, option: option, output: &output) else { return nil }
        let caps = export.capabilities

        var item = OutputBuffer(capacity: 64)
        item.append(InfoType.export)
        item.append(caps.size)
        item.append(flags(for: caps).rawValue)
        output.appendOptionReply(option: option, type: OptionReply.info, data: item.bytes)
        if requests.contains(InfoType.name) {
            item.removeAll()
            item.append(InfoType.name)
            item.append(export.exportName)
            output.appendOptionReply(option: option, type: OptionReply.info, data: item.bytes)
        }
        let description = export.backend.exportDescription ?? configuration.exportDescription
        if requests.contains(InfoType.description) && !description.isEmpty {
            item.removeAll()
            item.append(InfoType.description)
            item.append(description)
            output.appendOptionReply(option: option, type: OptionReply.info, data: item.bytes)
        }
        // The protocol asks a server with constraints other than the defaults (minimum 1, payload
        // 32 MiB) to advertise them even when the client did not ask.
        let nonDefaultSizes = caps.blockSize.minimum > 1 || caps.blockSize.maximumPayload < 32 << 20
        if requests.contains(InfoType.blockSize) || nonDefaultSizes {
            item.removeAll()
            item.append(InfoType.blockSize)
            item.append(caps.blockSize.minimum)
            item.append(min(caps.blockSize.preferred, caps.blockSize.maximumPayload))
            item.append(caps.blockSize.maximumPayload)
            output.appendOptionReply(option: option, type: OptionReply.info, data: item.bytes)
        }
        output.appendOptionReply(option: option, type: OptionReply.ack)
        if option == OptionCode.info {
            await export.backend.close()
            return nil
        }
        event(
            .exportOpened, .info,
            "export '\(name)' opened: \(caps.size) bytes, flags 0x\(String(flags(for: caps).rawValue, radix: 16))",
            ["export": name, "size": String(caps.size)])
        return export
    }

    /// Handles LIST_META_CONTEXT and SET_META_CONTEXT. Only `base:allocation` exists.
    private mutating func metaContext(option: UInt32, data: OptionData, output: inout OutputBuffer) {
        guard configuration.offersMetaContexts else {
            log("meta contexts are not offered")
            output.appendOptionError(
                option: option, type: OptionReply.errUnsupported, message: "this server does not offer meta contexts")
            return
        }
        guard structuredReplies else {
            output.appendOptionError(
                option: option, type: OptionReply.errInvalid,
                message: "meta contexts need NBD_OPT_STRUCTURED_REPLY or NBD_OPT_EXTENDED_HEADERS to be negotiated first")
            return
        }
        var data = data
        guard data.readLengthPrefixedString() != nil, let count = data.readUInt32() else {
            output.appendOptionError(
                option: option, type: OptionReply.errInvalid, message: "malformed meta context request")
            return
        }
        var queries: [String] = []
        for _ in 0..<count {
            guard let query = data.readLengthPrefixedString() else {
                output.appendOptionError(
                    option: option, type: OptionReply.errInvalid, message: "malformed meta context query")
                return
            }
            queries.append(query)
        }
        guard data.remaining == 0 else {
            output.appendOptionError(
                option: option, type: OptionReply.errInvalid, message: "trailing bytes after meta context queries")
            return
        }
        let matches: Bool
        if option == OptionCode.listMetaContext {
            matches = queries.isEmpty || queries.contains { $0 == "base:" || $0 == baseAllocationContextName }
        } else {
            matches = queries.contains(baseAllocationContextName)
            baseAllocation = matches
        }
        if matches {
            var item = OutputBuffer(capacity: 64)
            item.append(baseAllocationContextID)
            item.append(baseAllocationContextName)
            output.appendOptionReply(option: option, type: OptionReply.metaContext, data: item.bytes)
        }
        output.appendOptionReply(option: option, type: OptionReply.ack)
    }
}

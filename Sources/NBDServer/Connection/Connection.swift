import NBDCore
import NBDWire
import Synchronization

/// One client connection: handshake, then the transmission loop, then closing the backend.
///
/// ## Threading
/// A connection is one long-lived task pinned to a thread of its own (`ThreadExecutor`). The
/// task blocks in `recv` and `send` on that thread and awaits the stack inline, so a backend that does
/// not suspend costs no thread hop. Requests whose operation the stack lists in
/// `Capabilities.slowOperations` run instead as tasks on the server's
/// ``SlowOperationPool``, at most ``ServerConfiguration/maximumSlowRequestsPerConnection`` at once,
/// and reply out of order through the ``CombiningWriter``; unless they have recently been fast
/// (``SlowOperationEstimate``), in which case they too run inline.
struct Connection<Provider: BackendProvider>: Sendable {
    let id: UInt64
    let socket: Socket
    let provider: Provider
    let context: ServerContext
    /// What this connection holds of the server's payload memory budget.
    let charges: ConnectionPayloadCharges
    /// The most output buffer memory kept between batches: without a budget, enough for the
    /// ordinary large reads (``retainedOutputCapacity``); with one, enough for a batch and one 1 MiB
    /// read reply (``budgetedOutputCapacity``), part of the connection's fixed memory like its
    /// receive buffer: a larger read's buffer is freed once its reply is sent.
    let retainedCapacity: Int

    private var configuration: ServerConfiguration { context.configuration }

    init(id: UInt64, socket: Socket, provider: Provider, context: ServerContext) {
        self.id = id
        self.socket = socket
        self.provider = provider
        self.context = context
        self.charges = ConnectionPayloadCharges(budget: context.payloadBudget)
        self.retainedCapacity =
            context.payloadBudget.isUnlimited
            ? Self.retainedOutputCapacity : max(Self.budgetedOutputCapacity, 2 * context.configuration.sendBatchSize)
    }

    /// Starts the connection's thread and task. Returns `false` if no thread could be created.
    static func start(id: UInt64, socket: Socket, provider: Provider, context: ServerContext) -> Bool {
        guard let executor = ThreadExecutor(name: "nbd-conn-\(id)") else { return false }
        let connection = Connection(id: id, socket: socket, provider: provider, context: context)
        Task(executorPreference: executor) {
            await connection.run()
            context.connectionEnded(id)
            executor.stop()
        }
        return true
    }

    /// Reports a problem an operator should see (see ``ServerConfiguration/errorLogger``).
    private func warn(_ message: @autoclosure () -> String) {
        event(.message, .error, message())
    }

    /// Reports a problem of a known kind an operator should see.
    private func warn(_ kind: ServerEvent.Kind, _ message: @autoclosure () -> String) {
        event(kind, .error, message())
    }

    private func log(_ message: @autoclosure () -> String) {
        event(.message, .debug, message())
    }

    /// Emits an event about this connection (metadata `connection` plus `extra`).
    private func event(
        _ kind: ServerEvent.Kind, _ level: ServerEvent.Level, _ message: @autoclosure () -> String,
        _ extra: [String: String] = [:]
    ) {
        let id = self.id
        configuration.emit(kind, level, message(), extra.merging(["connection": String(id)]) { $1 })
    }

    func run() async {
        let context = self.context
        var reader = BufferedReader(socket: socket, capacity: configuration.receiveBufferSize)
        var output = OutputBuffer(capacity: 64 << 10)
        var handshake = Handshake(
            provider: provider, configuration: configuration, connectionID: id, socket: socket,
            acceptsMultipleConnections: context.acceptsMultipleConnections,
            isShuttingDown: { context.isShuttingDown })
        let peer = handshake.peer
        configuration.emit(
            .connectionOpened, .info, "accepted",
            Handshake<Provider>.metadata(connection: id, peer: peer, ["connections": String(context.openConnections)]))
        socket.setReceiveTimeout(configuration.handshakeTimeout)
        let deadline = configuration.negotiationTimeout.map { limit in
            NegotiationDeadline(after: limit) { [self] in
                warn(.handshakeTimedOut, "dropped: the handshake was not finished within \(limit) (--timeout)")
                self.socket.shutdownBoth()
            }
        }
        let negotiated = await handshake.run(reader: &reader, output: &output)
        // The deadline may have passed just as the handshake finished: then the socket is already
        // shut down, and the connection ends here rather than serving a dead socket.
        let inTime = deadline?.finish() ?? true
        guard let export = negotiated, inTime else {
            if let export = negotiated { await export.backend.close() }
            log("closed during the handshake")
            handshake.socket.shutdownBoth()
            return
        }
        if configuration.handshakeTimeout != nil {
            socket.setReceiveTimeout(nil)
        }
        // After NBD_OPT_STARTTLS, the secure socket.
        let socket = handshake.socket
        await transmit(export, socket: socket, reader: &reader, output: &output)
        // The backend is closed exactly once, after the last request (inline or slow) finished.
        await export.backend.close()
        socket.shutdownBoth()
        log("closed")
    }

    /// The transmission phase: read, validate, serve, reply; until DISC, end of stream, a protocol
    /// violation or a failed send.
    private func transmit(
        _ export: NegotiatedExport<Provider.Backend>, socket: Socket, reader: inout BufferedReader,
        output: inout OutputBuffer
    ) async {
        let caps = export.capabilities
        var validated = caps
        // Block status is valid only once base:allocation was selected, whatever the stack tracks.
        validated.canExtents = export.baseAllocation
        let validator = RequestValidator(capabilities: validated, structuredReplies: export.structuredReplies)
        let framing = export.framing
        let extended = export.extendedHeaders
        let executor = RequestExecutor(
            backend: export.backend, framing: framing,
            stackReportsExtents: caps.canExtents,
            holeDetectionThreshold: configuration.holeDetectionThreshold, connectionID: id,
            configuration: configuration)
        let writer = CombiningWriter(socket: socket)
        // In order: every request runs here and is answered before the next is read.
        let inOrder = configuration.servesRequestsInOrder
        let slowOperations = inOrder ? [] : caps.slowOperations
        let suspendingOperations = inOrder ? [] : caps.suspendingOperations
        let suspendedRequests = context.suspendedRequests
        let writeDisconnectLimit = caps.blockSize.writeDisconnectLimit
        let slowLimit = max(1, configuration.maximumSlowRequestsPerConnection)
        let slots = Semaphore(value: UInt32(slowLimit))
        // Enough for every slot's 1 MiB write to reuse its buffer.
        // Kept buffers are charged to the payload budget, which reclaims them under pressure.
        let payloads = PayloadPool(retainedLimit: slowLimit << 20, budget: context.payloadBudget)
        let pool = context.pool
        let batchSize = configuration.sendBatchSize
        let inlineThreshold = configuration.inlineSlowOperationThreshold
        let estimate = SlowOperationEstimate()
        let slowTasks = SlowRequestTasks()
        var disconnectedGracefully = false
        var tail = ReplyTail()
        let charges = self.charges
        // Whether the stack's reads run here, on this thread, without suspending: only then may the
        // next read be performed while the end of a large batch waits for the client.
        let readsRunInline = !slowOperations.contains(.read) && !suspendingOperations.contains(.read)
        let overlappedReads = SlowOperationEstimate()
        let overlappedReadLimit = configuration.overlappedReadLimit
        // Large reads whose bytes the stack finds in a file leave with sendfile (ServerConfiguration
        // .sendsFileDataWithoutCopying): over a plain kernel socket only, never TLS or in memory.
        let sendsFileData = configuration.sendsFileDataWithoutCopying && socket.isKernel && readsRunInline

        // The thread is marked for the whole loop, so requests that suspend start here and the
        // upstream requests they send while one batch of client requests is served leave together
        // (the NBD client batches them until the batch ends). The batch ends before every point
        // where this thread may block: waiting for the client, or for a free slot.
        InlineResumption.enter()
        loop: while true {
            // Set when this request is a read that the end of the previous batch may wait for.
            var timesRead = false
            let hasCompleteRequest = Self.hasCompleteRequest(in: reader, extended: extended)
            if output.count >= batchSize || !hasCompleteRequest {
                InlineResumption.endBatch()
                if readsRunInline && output.count >= batchSize && hasCompleteRequest && Self.nextIsRead(in: reader) {
                    // A large batch and a read behind it: send what the socket takes and perform the
                    // read before waiting for the rest (ReplyTail). Only while such reads have been
                    // quick, so a slow one (a delay under noparallel) never holds back a reply.
                    guard finish(&tail, on: writer) else { break loop }
                    timesRead = true
                    if overlappedReads.isBelow(overlappedReadLimit) {
                        charges.moveOutputToTail()
                        guard tail.start(&output, on: writer) else { break loop }
                    } else {
                        guard flush(&output, after: &tail, to: writer) else { break loop }
                    }
                } else {
                    guard flush(&output, after: &tail, to: writer) else { break loop }
                }
            }
            let headerSize = extended ? ProtocolConstants.extendedRequestHeaderSize : ProtocolConstants.requestHeaderSize
            // The magic is checked as soon as it arrives: a compact header (28 bytes) sent after
            // NBD_OPT_EXTENDED_HEADERS must not leave the server waiting for 4 bytes that never come.
            guard reader.fill(atLeast: 4) else { break loop }
            let magic = UInt32(bigEndian: reader.unread.loadUnaligned(as: UInt32.self))
            let expectedMagic = extended ? ProtocolConstants.extendedRequestMagic : ProtocolConstants.requestMagic
            guard magic == expectedMagic else {
                // After NBD_OPT_EXTENDED_HEADERS a compact header (or anything else) leaves the stream
                // with no way to tell where the next request starts: disconnect, as for any bad magic.
                let expected = extended ? "the extended request magic, as negotiated" : "the request magic"
                warn(
                    .protocolViolation,
                    "bad request magic 0x\(String(magic, radix: 16)) (expected \(expected)); disconnecting")
                break loop
            }
            guard reader.fill(atLeast: headerSize) else { break loop }
            let header = extended ? RequestHeader(parsingExtended: reader.unread) : RequestHeader(parsing: reader.unread)
            reader.consume(headerSize)
            // With extended headers NBD_CMD_FLAG_PAYLOAD_LEN says whether a payload follows the header
            // (its length is then the header's); it belongs to the wire, so filters never see it. In
            // the compact form it stays, and the validator refuses it as an unknown flag.
            let payloadFlag = extended && header.flags & ProtocolConstants.commandFlagPayloadLength != 0
            let flags = CommandFlags(
                rawValue: extended ? header.flags & ~ProtocolConstants.commandFlagPayloadLength : header.flags)
            guard let command = Command(rawValue: header.type) else {
                // An unknown command has no payload we know of (unless PAYLOAD_LEN announces one,
                // which is read and dropped); the protocol asks for EINVAL.
                event(.requestRefused, .debug, "unknown command \(header.type)", ["command": String(header.type), "errno": "EINVAL"])
                if payloadFlag {
                    guard discardPayload(header.length, of: "unknown command \(header.type)", reader: &reader) else {
                        break loop
                    }
                }
                output.appendErrorReply(
                    cookie: header.cookie, offset: header.offset,
                    error: NBDError(.invalidArgument, "unknown command \(header.type)"), flags: [], framing: framing)
                continue loop
            }
            if command == .disconnect {
                log("client disconnected")
                disconnectedGracefully = true
                break loop
            }
            // The effect length, or a write's payload length.
            var length = header.length
            if extended {
                switch ExtendedRequestCheck.check(
                    command, payloadFlag: payloadFlag, length: header.length,
                    blockStatusPayload: export.baseAllocation,
                    maximumPayload: UInt64(caps.blockSize.acceptedMaximumPayload))
                {
                case .proceed:
                    break
                case .refuse(let wireError, let message, let payload):
                    event(.requestRefused, .debug, "refused \(command): \(message)", ["command": "\(command)", "errno": wireError == NBDError.Code.overflow.wireValue ? "EOVERFLOW" : "EINVAL"])
                    if payload > 0 {
                        guard discardPayload(payload, of: "\(command)", reader: &reader) else { break loop }
                    }
                    output.appendErrorReply(
                        cookie: header.cookie, offset: header.offset, wireError: wireError, message: message,
                        framing: framing)
                    continue loop
                case .readBlockStatusPayload:
                    // Small (checked above): 8 bytes of effect length and one or a few context ids.
                    var bytes = [UInt8](repeating: 0, count: Int(header.length))
                    guard bytes.withUnsafeMutableBytes({ reader.read(into: $0) }) else { break loop }
                    switch BlockStatusPayload.parse(bytes, knownContext: baseAllocationContextID) {
                    case .success(let effectLength):
                        length = effectLength
                    case .failure(let error):
                        event(.requestRefused, .debug, "refused \(command): \(error)", ["command": "\(command)", "errno": "EINVAL"])
                        output.appendErrorReply(
                            cookie: header.cookie, offset: header.offset, error: error, flags: flags, framing: framing)
                        continue loop
                    }
                }
            }
            if command == .write, let limit = writeDisconnectLimit, length > UInt64(limit) {
                warn(.protocolViolation, "write of \(length) bytes is larger than the write disconnect limit \(limit); disconnecting")
                break loop
            }
            do {
                try validator.validate(command, offset: header.offset, length: length, flags: flags)
            } catch {
                event(.requestRefused, .debug, "refused \(command): \(error)", ["command": "\(command)", "errno": error.code.name])
                if command == .write {
                    guard length <= configuration.maximumDiscardedPayload else {
                        event(.protocolViolation, .notice, "write payload of \(length) bytes is too large to discard; disconnecting")
                        break loop
                    }
                    guard reader.discard(length) else { break loop }
                }
                output.appendErrorReply(
                    cookie: header.cookie, offset: header.offset, error: error, flags: flags, framing: framing)
                continue loop
            }

            let slow = Self.matches(command, flags: flags, slowOperations)
            let suspends = !slow && Self.matches(command, flags: flags, suspendingOperations)
            // Large payloads are charged to the server's budget before they are read or performed.
            let charge =
                command == .read || command == .write ? charges.budget.charge(forPayload: Int(length)) : 0
            if suspends || (slow && !(inlineThreshold.map { estimate.isBelow($0) } ?? false)) {
                if !charges.tryReserve(charge) {
                    guard
                        waitForBudget(
                            charge, output: &output, tail: &tail, writer: writer, slots: slots, slotCount: slowLimit)
                    else { break loop }
                }
                if !slots.tryWait() {
                    // Back-pressure: stop reading until a slow or suspended request finishes. This
                    // thread is the connection's own, so waiting here blocks nobody else.
                    InlineResumption.endBatch()
                    guard flush(&output, after: &tail, to: writer) else {
                        charges.release(charge)
                        break loop
                    }
                    slots.wait()
                }
                let payload = payloads.take(command == .write ? Int(length) : 0)
                if command == .write {
                    guard reader.read(into: payload.payload) else {
                        payloads.give(payload)
                        charges.release(charge)
                        slots.signal()
                        break loop
                    }
                }
                let request = SlowRequest(
                    command: command, flags: flags, header: header, length: length, payload: payload)
                let taskID = slowTasks.reserveID()
                let task: Task<Void, Never>
                if suspends {
                    // Started here, on the connection's thread, until its first suspension (the
                    // upstream request is sent from this thread); resumed on the thread that
                    // completes it (the upstream reply's reader), where its reply is written.
                    task = InlineResumption.withScope {
                        Task(executorPreference: suspendedRequests) {
                            var reply = OutputBuffer(
                                capacity: request.command == .read ? 64 + Int(request.length) : 256)
                            await executor.perform(
                                request.command, flags: request.flags, cookie: request.header.cookie,
                                offset: request.header.offset, length: request.length,
                                payload: UnsafeRawBufferPointer(request.payload.payload), into: &reply)
                            payloads.give(request.payload)
                            if reply.count <= Self.batchedReplyLimit && InlineResumption.isActive {
                                writer.appendForBatch(reply.bytes)
                            } else {
                                writer.write(reply.bytes)
                            }
                            charges.release(charge)
                            slowTasks.finished(taskID)
                            slots.signal()
                        }
                    }
                } else {
                    task = Task(executorPreference: pool) {
                        var reply = OutputBuffer(
                            capacity: request.command == .read ? 64 + Int(request.length) : 256)
                        let started = ContinuousClock.now
                        await executor.perform(
                            request.command, flags: request.flags, cookie: request.header.cookie,
                            offset: request.header.offset, length: request.length,
                            payload: UnsafeRawBufferPointer(request.payload.payload), into: &reply)
                        estimate.record(started.duration(to: .now))
                        payloads.give(request.payload)
                        writer.write(reply.bytes)
                        charges.release(charge)
                        slowTasks.finished(taskID)
                        slots.signal()
                    }
                }
                slowTasks.register(taskID, task)
                continue loop
            }

            // Inline: every fast request, and slow ones while they have recently been fast.
            var payload = UnsafeRawBufferPointer(start: nil, count: 0)
            var consumedAfterwards = 0
            // A write too large for the receive buffer, received into a buffer of the payload pool
            // and given back after the write (the pool keeps at most a few, charged to the budget;
            // a scratch buffer kept for the connection's life would hold the largest write it saw).
            var largeWrite: PayloadPool.Buffer?
            var largeWriteCharge = 0
            if command == .read && sendsFileData && !slow
                && length >= UInt64(ServerConfiguration.fileDataMinimumLength)
            {
                switch await sendFromFile(
                    executor, header: header, length: Int(length), flags: flags, output: &output, tail: &tail,
                    writer: writer)
                {
                case .sent: continue loop
                case .notSent: break
                case .failed: break loop
                }
            }
            if command == .read && charge > 0 {
                // The reply gets a buffer of exactly its size, freed (and the charge returned) once
                // sent, so the charge is what the read really takes. The batch before it goes first.
                if !output.isEmpty {
                    InlineResumption.endBatch()
                    guard flush(&output, after: &tail, to: writer) else { break loop }
                }
                if !charges.tryReserve(charge) {
                    guard
                        waitForBudget(
                            charge, output: &output, tail: &tail, writer: writer, slots: slots, slotCount: slowLimit)
                    else { break loop }
                }
                // A buffer the connection keeps anyway (up to a 1 MiB reply) is reused: a fresh
                // allocation per 1 MiB read faulted in its pages every time (1.4-1.7x the CPU).
                if output.storage.count < 64 + Int(length) {
                    output = OutputBuffer(capacity: 64 + Int(length))
                }
                charges.chargeOutput(charge)
            }
            if command == .write {
                let count = Int(length)
                if count <= reader.capacity {
                    // The payload is already (or soon) in the receive buffer: hand the backend a
                    // pointer into it, no copy.
                    guard reader.fill(atLeast: count) else { break loop }
                    payload = UnsafeRawBufferPointer(rebasing: reader.unread[0..<count])
                    consumedAfterwards = count
                } else {
                    let charge = charges.budget.charge(forPayload: count)
                    if !charges.tryReserve(charge) {
                        guard
                            waitForBudget(
                                charge, output: &output, tail: &tail, writer: writer, slots: slots,
                                slotCount: slowLimit)
                        else { break loop }
                    }
                    // From the connection's payload pool, whose kept buffers are charged to the
                    // budget (and reclaimed under pressure): no page faults per 1 MiB write.
                    let buffer = payloads.take(count)
                    guard reader.read(into: buffer.payload) else {
                        payloads.give(buffer)
                        charges.release(charge)
                        break loop
                    }
                    largeWrite = buffer
                    largeWriteCharge = charge
                    payload = UnsafeRawBufferPointer(buffer.payload)
                }
            }
            let started = slow || timesRead ? ContinuousClock.now : nil
            // Unmarked while an inline request runs: if its backend suspends after all (the nbd
            // backend under noparallel, or a slow flush run inline), its upstream request must go
            // out now, not wait for a batch end this thread would only reach once it returned.
            InlineResumption.leave()
            await executor.perform(
                command, flags: flags, cookie: header.cookie, offset: header.offset, length: length,
                payload: payload, into: &output)
            InlineResumption.enter()
            if let largeWrite {
                payloads.give(largeWrite)
                charges.release(largeWriteCharge)
            }
            if let started {
                let duration = started.duration(to: .now)
                if slow { estimate.record(duration) }
                if timesRead { overlappedReads.record(duration) }
            }
            reader.consume(consumedAfterwards)
        }

        // DISC, end of stream or an error: complete every outstanding request before closing. Taking
        // every slot means no slow request is left running. Without a DISC nobody waits for the
        // replies (the client left, or the server is stopping and shut the read side), so requests
        // suspended in a cancellable wait (a delay, a rate limit) end now instead of when it runs out.
        InlineResumption.leave()
        _ = finish(&tail, on: writer)
        if !disconnectedGracefully { slowTasks.cancelAll() }
        for _ in 0..<slowLimit { slots.wait() }
        _ = flush(&output, after: &tail, to: writer)
        // A failed send leaves the buffers unsent; their memory goes with the connection.
        charges.releaseTail()
        charges.releaseOutput()
    }

    /// What became of a read offered to ``sendFromFile(_:header:length:flags:output:tail:writer:)``.
    private enum FileReadOutcome {
        /// The reply went out, its data with `sendfile`.
        case sent
        /// The stack has no file region for it, or another thread was sending: read it as usual.
        case notSent
        /// The connection failed: stop serving it.
        case failed
    }

    /// Answers a read whose bytes the stack reports in a file (`BlockBackend.fileRegion`): sends
    /// the batch so far and the reply header, then the data straight from the file with `sendfile`,
    /// through the writer, so other threads' replies never interleave with it.
    private func sendFromFile(
        _ executor: RequestExecutor<Provider.Backend>, header: RequestHeader, length: Int, flags: CommandFlags,
        output: inout OutputBuffer, tail: inout ReplyTail, writer: CombiningWriter
    ) async -> FileReadOutcome {
        // Unmarked while the stack answers, as around `perform` in the loop (a suspending layer's
        // upstream request must not wait for a batch end).
        InlineResumption.leave()
        let region = await executor.fileRegion(forReadOf: length, at: header.offset, flags: flags)
        InlineResumption.enter()
        guard let region else { return .notSent }
        InlineResumption.endBatch()
        guard finish(&tail, on: writer) else { return .failed }
        let mark = output.count
        executor.appendReadHeader(cookie: header.cookie, offset: header.offset, length: length, into: &output)
        let outcome = writer.write(
            output.bytes, file: region.descriptor, at: region.offset, count: length,
            sendFileLimit: configuration.sendFileLimit)
        switch outcome {
        case .busy:
            output.truncate(to: mark)
            return .notSent
        case .sent(let fromFile):
            context.bytesSentFromFiles.add(fromFile, ordering: .relaxed)
            emptyAfterSending(&output)
            return .sent
        case .connectionFailed:
            return .failed
        case .dataUnavailable:
            warn(
                .requestFailed,
                "read of \(length) bytes at \(header.offset) failed after its reply header was sent: the file "
                    + "(descriptor \(region.descriptor), offset \(region.offset)) could be neither sent nor read; "
                    + "disconnecting, since the client was promised the data")
            return .failed
        }
    }

    /// Sends the rest of `tail`, then `output`.
    private func flush(_ output: inout OutputBuffer, after tail: inout ReplyTail, to writer: CombiningWriter) -> Bool {
        guard finish(&tail, on: writer) else { return false }
        guard !output.isEmpty else { return !writer.hasFailed }
        let ok = writer.write(output.bytes)
        emptyAfterSending(&output)
        return ok
    }

    /// Empties `output` once its bytes went to the writer, and returns its charge.
    private func emptyAfterSending(_ output: inout OutputBuffer) {
        output.removeAll()
        // A rare huge read (up to the payload limit) must not pin its buffer for the connection's
        // life; ordinary batches and 1-4 MiB reads stay below this and keep their buffer.
        output.shrink(to: retainedCapacity)
        charges.releaseOutput()
    }

    /// Sends the rest of `tail` and returns its charge.
    private func finish(_ tail: inout ReplyTail, on writer: CombiningWriter) -> Bool {
        let ok = tail.finish(on: writer, retainedCapacity: retainedCapacity)
        charges.releaseTail()
        return ok
    }

    /// Waits until `bytes` of the payload budget are this connection's: first sends everything it
    /// has (so it holds no charge only it could give back), then, if what its slow requests hold
    /// would leave it over its share, lets them finish, and then waits in line. Returns `false` once
    /// the connection has failed.
    private func waitForBudget(
        _ bytes: Int, output: inout OutputBuffer, tail: inout ReplyTail, writer: CombiningWriter, slots: Semaphore,
        slotCount: Int
    ) -> Bool {
        InlineResumption.endBatch()
        guard flush(&output, after: &tail, to: writer) else { return false }
        let budget = charges.budget
        if charges.heldBytes > 0 && charges.heldBytes + bytes > budget.connectionShare {
            // Only this connection's slow and suspended requests hold anything now; they finish on
            // their own (storage calls, replies to this client).
            for _ in 0..<slotCount { slots.wait() }
            for _ in 0..<slotCount { slots.signal() }
        }
        if budget.shouldReportWait() {
            event(
                .payloadBudgetWait, .info,
                "waiting for \(bytes) bytes of the payload memory budget (\(budget.chargedBytes) of \(budget.limit) in use)",
                ["bytes": String(bytes), "budget": String(budget.limit), "charged": String(budget.chargedBytes)])
        }
        charges.reserve(bytes)
        return true
    }

    /// The most output buffer memory a connection keeps between batches.
    static var retainedOutputCapacity: Int { 8 << 20 }

    /// The most output buffer memory a connection keeps between batches under a payload budget:
    /// a 1 MiB read's reply and its header.
    static var budgetedOutputCapacity: Int { (1 << 20) + (64 << 10) }

    /// Whether the buffered request (complete, see ``hasCompleteRequest(in:)``) is a read.
    private static func nextIsRead(in reader: borrowing BufferedReader) -> Bool {
        // The type is at the same place in both header forms.
        RequestHeader(parsing: reader.unread).type == Command.read.rawValue
    }

    /// Whether a whole request (header and its payload: a write's, or with extended headers whatever
    /// `NBD_CMD_FLAG_PAYLOAD_LEN` announces) is already buffered, so its reply can join the current
    /// batch instead of the batch being sent first.
    private static func hasCompleteRequest(in reader: borrowing BufferedReader, extended: Bool) -> Bool {
        let available = reader.buffered
        if extended {
            guard available >= ProtocolConstants.extendedRequestHeaderSize else { return false }
            let header = RequestHeader(parsingExtended: reader.unread)
            // A write carries its payload with or without the flag (see ExtendedRequestCheck).
            guard header.flags & ProtocolConstants.commandFlagPayloadLength != 0 || header.type == Command.write.rawValue
            else { return true }
            return UInt64(available - ProtocolConstants.extendedRequestHeaderSize) >= header.length
        }
        guard available >= ProtocolConstants.requestHeaderSize else { return false }
        let header = RequestHeader(parsing: reader.unread)
        guard header.type == Command.write.rawValue else { return true }
        return available - ProtocolConstants.requestHeaderSize >= Int(header.length)
    }

    /// Reads and drops the payload of a refused request (`what`, for the message) so the next request
    /// is found; disconnects (returns `false`) above ``ServerConfiguration/maximumDiscardedPayload``
    /// or when the stream ends.
    private func discardPayload(_ length: UInt64, of what: String, reader: inout BufferedReader) -> Bool {
        guard length <= configuration.maximumDiscardedPayload else {
            event(.protocolViolation, .notice, "\(what) payload of \(length) bytes is too large to discard; disconnecting")
            return false
        }
        return reader.discard(length)
    }

    /// Replies at most this long, written by a thread that resumed several requests in one batch,
    /// are copied into the writer and sent together; longer ones are sent from their own buffer.
    static var batchedReplyLimit: Int { 64 << 10 }

    /// Whether the request is one of `operations` (a FUA write, zero or trim also counts as
    /// `.fuaRequests`).
    private static func matches(_ command: Command, flags: CommandFlags, _ operations: Operations) -> Bool {
        guard !operations.isEmpty else { return false }
        let operation: Operations
        switch command {
        case .read: operation = .read
        case .write: operation = .write
        case .writeZeroes: operation = .zero
        case .trim: operation = .trim
        case .flush: operation = .flush
        case .cache: operation = .cache
        case .blockStatus: operation = .extents
        case .disconnect: return false
        }
        if operations.contains(operation) { return true }
        return flags.contains(.fua) && operations.contains(.fuaRequests)
            && (command == .write || command == .writeZeroes || command == .trim)
    }
}

/// A request handed to the slow pool.
struct SlowRequest: Sendable {
    let command: Command
    let flags: CommandFlags
    let header: RequestHeader
    /// The effect length (a write's payload length; with a block-status payload, the length it names).
    let length: UInt64
    let payload: PayloadPool.Buffer
}

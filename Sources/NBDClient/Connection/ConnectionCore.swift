import NBDCore
import NBDWire
import Synchronization

/// The shared state of one connection: the requests in flight, matched to replies by cookie; the
/// in-flight budget; and the reader loop that runs on the connection's own thread.
///
/// Only the reader thread completes a request that was sent, and it writes read data into the
/// caller's buffer before completing it, so a buffer is never touched after its request returned.
/// No lock is held across a system call: the table lock guards lookups and bookkeeping only.
final class ConnectionCore: Sendable {
    typealias Completion = UnsafeContinuation<Result<[Extent], NBDError>, Never>

    /// The address of a caller's read buffer. Sendable because only the reader thread writes through
    /// it, and only while the request that owns the buffer is waiting for its reply.
    struct BufferAddress: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
    }

    /// A request in flight.
    struct Pending {
        var progress: ReplyProgress
        /// Where read data goes (the caller's buffer, valid until the request completes).
        var destination: BufferAddress?
        var completion: Completion
        var cost: Int
    }

    /// A request waiting for room in the in-flight budget.
    struct Waiter {
        var cost: Int
        var resume: UnsafeContinuation<NBDError?, Never>
    }

    struct State {
        var nextCookie: UInt64 = 1
        var pending: [UInt64: Pending] = [:]
        /// Requests admitted (in flight or about to be sent) and their payload bytes.
        var admitted = 0
        var bytesAdmitted = 0
        var waiters: [Waiter] = []
        var waitersHead = 0
        /// Why the connection is closed, once it is.
        var failure: NBDError?
        var disconnecting = false
        var readerFinished = false
        var finishWaiters: [UnsafeContinuation<Void, Never>] = []
    }

    let socket: Socket
    let export: ExportInfo
    let configuration: ClientConfiguration
    private let writer: CombiningWriter
    private let parser: ReplyParser
    private let state = LockedValue(State())
    /// Requests sent (`NBD_CMD_DISC` included), for tests that check a range went as one request.
    private let sent = Atomic<Int>(0)

    init(socket: Socket, export: ExportInfo, configuration: ClientConfiguration) {
        self.socket = socket
        self.export = export
        self.configuration = configuration
        self.writer = CombiningWriter(socket: socket, shutsDownWhenBatchFails: true)
        self.parser = ReplyParser(
            structuredReplies: export.structuredReplies, allocationContextID: export.allocationContextID,
            extendedHeaders: export.extendedHeaders,
            maximumMetadataChunk: max(configuration.receiveBufferSize, 4096)
                - ProtocolConstants.extendedReplyHeaderSize)
    }

    /// The number of requests sent so far.
    var requestsSent: Int { sent.load(ordering: .relaxed) }

    /// Why the connection closed, or `nil` while it is open.
    var failure: NBDError? { state.withLock { $0.failure } }

    /// Requests waiting for room in the in-flight budget, and requests in flight.
    var occupancy: (waiting: Int, admitted: Int, bytes: Int) {
        state.withLock { ($0.waiters.count - $0.waitersHead, $0.admitted, $0.bytesAdmitted) }
    }

    // MARK: Requests

    /// Sends one request and waits for its complete reply. `payload` is a write's data; `destination`
    /// receives a read's data.
    func perform(
        _ command: Command, offset: UInt64, length: UInt64, flags: CommandFlags,
        payload: UnsafeRawBufferPointer? = nil, destination: UnsafeMutableRawPointer? = nil
    ) async -> Result<[Extent], NBDError> {
        // The callers split: only extended headers carry a length above 32 bits.
        precondition(length <= UInt64(UInt32.max) || export.extendedHeaders, "a compact request of \(length) bytes")
        let cost = command == .read || command == .write ? Int(length) : 0
        if let refused = await admit(cost: cost) { return .failure(refused) }
        if InlineResumption.isOwned(by: self) {
            // A caller resumed on this connection's reader thread issues another request (a filter
            // that reads before it writes). Sending may block until the server reads, and the server
            // may wait for this thread to read its replies first: leave the reader thread.
            await Self.leaveReaderThread()
        }
        let record = RequestRecord(command: command, offset: offset, length: length, flags: flags)
        let address = destination.map(BufferAddress.init)
        return await withUnsafeContinuation { (completion: Completion) in
            let registered = state.withLock { state -> Result<UInt64, NBDError> in
                if let failure = state.failure { return .failure(failure) }
                if state.disconnecting { return .failure(Self.disconnected) }
                let cookie = state.nextCookie
                state.nextCookie &+= 1
                state.pending[cookie] = Pending(
                    progress: ReplyProgress(request: record), destination: address, completion: completion, cost: cost)
                return .success(cookie)
            }
            let cookie: UInt64
            switch registered {
            case .failure(let error):
                release(cost: cost)
                completion.resume(returning: .failure(error))
                return
            case .success(let value):
                cookie = value
            }
            if !sendHeader(command, flags: flags, cookie: cookie, offset: offset, length: length, payload: payload) {
                // The reader wakes at end of stream and fails this request with everything else.
                socket.shutdownBoth(notifyingPeer: false)
            }
        }
    }

    private func sendHeader(
        _ command: Command, flags: CommandFlags, cookie: UInt64, offset: UInt64, length: UInt64,
        payload: UnsafeRawBufferPointer?
    ) -> Bool {
        sent.add(1, ordering: .relaxed)
        let extended = export.extendedHeaders
        let size = extended ? ProtocolConstants.extendedRequestHeaderSize : ProtocolConstants.requestHeaderSize
        return withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { header in
            if extended {
                // A write's length is its payload's, which the flag says.
                let wireFlags = flags.rawValue | (payload == nil ? 0 : ProtocolConstants.commandFlagPayloadLength)
                RequestHeader(
                    flags: wireFlags, type: command.rawValue, cookie: cookie, offset: offset, length: length,
                    extended: true
                ).storeExtended(into: header)
            } else {
                RequestHeader(
                    flags: flags.rawValue, type: command.rawValue, cookie: cookie, offset: offset, length: length
                )
                .store(into: header)
            }
            let payload = payload ?? UnsafeRawBufferPointer(start: nil, count: 0)
            if payload.count <= Self.batchedPayloadLimit && command != .disconnect && InlineResumption.isActive {
                // The caller's thread batches (nbd-serve's connection thread): send with the others.
                return writer.appendForBatch(UnsafeRawBufferPointer(header), payload)
            }
            return writer.write(UnsafeRawBufferPointer(header), payload)
        }
    }

    /// Suspends and continues elsewhere: the yield enqueues the task on its executor from this
    /// thread, and the marker makes an executor that runs resumed jobs inline (nbd-serve's) hand it
    /// to its pool instead. Any other executor was not running it here in the first place.
    private static func leaveReaderThread() async {
        InlineResumption.leaveOnNextSuspension()
        await Task.yield()
    }

    /// Requests with at most this much payload are copied into a batch when the caller batches;
    /// larger ones are sent from the caller's memory at once.
    static var batchedPayloadLimit: Int { 64 << 10 }

    /// Waits until the request fits the in-flight budget. Returns why it cannot be sent, or `nil`.
    private func admit(cost: Int) async -> NBDError? {
        enum Decision { case admitted, refused(NBDError), wait }
        let decision = state.withLock { state -> Decision in
            if let failure = state.failure { return .refused(failure) }
            if state.disconnecting { return .refused(Self.disconnected) }
            if state.waitersHead == state.waiters.count && fits(cost, state) {
                state.admitted += 1
                state.bytesAdmitted += cost
                return .admitted
            }
            return .wait
        }
        switch decision {
        case .admitted: return nil
        case .refused(let error): return error
        case .wait: break
        }
        return await withUnsafeContinuation { (resume: UnsafeContinuation<NBDError?, Never>) in
            let refused = state.withLock { state -> NBDError? in
                if let failure = state.failure { return failure }
                if state.waitersHead == state.waiters.count && fits(cost, state) {
                    state.admitted += 1
                    state.bytesAdmitted += cost
                    resume.resume(returning: nil)
                    return nil
                }
                state.waiters.append(Waiter(cost: cost, resume: resume))
                return nil
            }
            if let refused { resume.resume(returning: refused) }
        }
    }

    private func fits(_ cost: Int, _ state: borrowing State) -> Bool {
        state.admitted == 0
            || (state.admitted < configuration.maximumRequestsInFlight
                && state.bytesAdmitted + cost <= configuration.maximumBytesInFlight)
    }

    /// Returns a finished request's share of the budget and admits waiters that now fit.
    private func release(cost: Int) {
        let woken = state.withLock { state in releaseLocked(cost: cost, &state) }
        for waiter in woken { waiter.resume.resume(returning: nil) }
    }

    private func releaseLocked(cost: Int, _ state: inout State) -> [Waiter] {
        state.admitted -= 1
        state.bytesAdmitted -= cost
        var woken: [Waiter] = []
        while state.waitersHead < state.waiters.count, fits(state.waiters[state.waitersHead].cost, state) {
            let waiter = state.waiters[state.waitersHead]
            state.waitersHead += 1
            state.admitted += 1
            state.bytesAdmitted += waiter.cost
            woken.append(waiter)
        }
        if state.waitersHead == state.waiters.count {
            state.waiters.removeAll(keepingCapacity: true)
            state.waitersHead = 0
        }
        return woken
    }

    // MARK: Disconnect

    static let disconnected = NBDError(.shutdown, "the NBD connection was closed by disconnect()")

    /// Sends `NBD_CMD_DISC` once; requests already in flight still get their replies, later ones
    /// fail. Returns after the reader stopped.
    func disconnect() async {
        let (first, idle) = state.withLock { state -> (Bool, Bool) in
            let first = !state.disconnecting && state.failure == nil
            state.disconnecting = true
            return (first, state.pending.isEmpty)
        }
        if first {
            _ = sendHeader(.disconnect, flags: [], cookie: 0, offset: 0, length: 0, payload: nil)
            // After the writer drained: a concurrent sender may still be sending, and TLS may not
            // send close_notify while another thread sends a record.
            writer.closeWriting()
        }
        if idle {
            // The writer closes the sending side once NBD_CMD_DISC has left (a thread that was
            // still flushing sends it later): shutting both down here could cut it off, and the
            // server would see the connection end without it.
            if first { socket.shutdownReading() } else { socket.shutdownBoth(notifyingPeer: false) }
        }
        await withUnsafeContinuation { (resume: UnsafeContinuation<Void, Never>) in
            let finished = state.withLock { state -> Bool in
                if state.readerFinished { return true }
                state.finishWaiters.append(resume)
                return false
            }
            if finished { resume.resume() }
        }
    }

    // MARK: Reader

    /// Receives and dispatches replies until the connection ends, then fails whatever is left.
    /// Runs on the connection's own thread.
    func runReader(_ buffer: inout BufferedReader) {
        if configuration.resumesCallersOnReaderThread {
            InlineResumption.withScope(owner: self) { readUntilClosed(&buffer) }
        } else {
            readUntilClosed(&buffer)
        }
    }

    private func readUntilClosed(_ buffer: inout BufferedReader) {
        let failure = receiveReplies(&buffer)
        socket.shutdownBoth(notifyingPeer: false)
        let (pending, waiters, finishWaiters) = state.withLock { state in
            if state.failure == nil { state.failure = failure }
            state.readerFinished = true
            let pending = Array(state.pending.values)
            state.pending = [:]
            let waiters = Array(state.waiters[state.waitersHead...])
            state.waiters = []
            state.waitersHead = 0
            let finishWaiters = state.finishWaiters
            state.finishWaiters = []
            return (pending, waiters, finishWaiters)
        }
        let error = self.failure ?? failure
        for request in pending { request.completion.resume(returning: .failure(error)) }
        for waiter in waiters { waiter.resume.resume(returning: error) }
        for waiter in finishWaiters { waiter.resume() }
    }

    /// The reply loop; returns why it stopped.
    private func receiveReplies(_ buffer: inout BufferedReader) -> NBDError {
        let lookup: (UInt64) -> RequestRecord? = { cookie in
            self.state.withLock { $0.pending[cookie]?.progress.request }
        }
        while true {
            let outcome: ReplyParser.Outcome
            do {
                outcome = try parser.parse(buffer.unread, lookup: lookup)
            } catch {
                return error
            }
            switch outcome {
            case .needMore(let count):
                guard count <= buffer.capacity else {
                    return ReplyParser.violation("a reply header of \(count) bytes, more than the receive buffer holds")
                }
                let hadPartial = !buffer.unread.isEmpty
                // Callers resumed on this thread may have batched work (replies to their own
                // clients): let it go before waiting for more.
                InlineResumption.endBatch()
                guard buffer.fill(atLeast: count) else { return closedError(midReply: hadPartial) }
            case .event(let event, let consumed, let payload):
                buffer.consume(consumed)
                if let error = deliver(event, payload: payload, buffer: &buffer) { return error }
                if state.withLock({ $0.disconnecting && $0.pending.isEmpty }) {
                    return Self.disconnected
                }
            }
        }
    }

    /// Moves an event's data into the request's buffer and completes the request when its reply is
    /// complete. Returns an error that ends the connection, or `nil`.
    private func deliver(_ event: ReplyEvent, payload: Int, buffer: inout BufferedReader) -> NBDError? {
        let cookie = event.cookie
        if payload > 0 || isHole(event) {
            let base = state.withLock { $0.pending[cookie]?.destination?.pointer }
            switch event {
            case .simple:
                guard buffer.read(payload, into: base) else { return closedError(midReply: true) }
            case .data(_, let position, _, _):
                guard buffer.read(payload, into: base.map { $0 + position }) else { return closedError(midReply: true) }
            case .hole(_, let position, let count, _):
                if let base { (base + position).initializeMemory(as: UInt8.self, repeating: 0, count: count) }
            default:
                break
            }
        }
        typealias Finished = (Completion, Result<[Extent], NBDError>, [Waiter])
        let finished: Finished?
        do {
            finished = try state.withLock { state throws(NBDError) -> Finished? in
                guard let result = try state.pending[cookie]?.progress.accept(event) else { return nil }
                let request = state.pending.removeValue(forKey: cookie)!
                return (request.completion, result, releaseLocked(cost: request.cost, &state))
            }
        } catch {
            return error
        }
        if let (completion, result, woken) = finished {
            completion.resume(returning: result)
            for waiter in woken { waiter.resume.resume(returning: nil) }
        }
        return nil
    }

    private func isHole(_ event: ReplyEvent) -> Bool {
        if case .hole = event { return true }
        return false
    }

    private func closedError(midReply: Bool) -> NBDError {
        if state.withLock({ $0.disconnecting }) {
            return Self.disconnected
        }
        if midReply {
            return NBDError(
                .ioError,
                "the NBD server \(export.name.isEmpty ? "" : "for '\(export.name)' ")closed the connection in the middle of a reply (truncated data)"
            )
        }
        return NBDError(.shutdown, "the NBD server closed the connection")
    }
}

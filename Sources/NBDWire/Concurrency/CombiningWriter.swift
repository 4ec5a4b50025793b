import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Serializes messages from several threads onto one socket without holding a lock across `send`:
/// the server's replies and the client's requests.
///
/// A writer appends its bytes under a short lock; whoever finds nobody sending becomes the flusher
/// and sends outside the lock until the pending bytes run out. When nothing is pending (the common
/// case: only the connection thread replies), the caller's buffer is sent directly, without a copy;
/// a header and its payload leave in one `sendmsg`. Two reused buffers swap roles, so steady state
/// allocates nothing.
package final class CombiningWriter: Sendable, InlineResumption.BatchEndAction {
    private struct State {
        var pending: [UInt8] = []
        var spare: [UInt8] = []
        var flushing = false
        /// The connection thread holds the turn between `beginWrite` and `finishWrite`.
        var turnHeldForRest = false
        var failed = false
        /// Stop writing (``closeWriting()``) once the flusher has sent what is pending.
        var closeWhenDrained = false
    }

    private let socket: Socket
    private let state = LockedValue(State())
    /// Whether a failed send at a batch's end shuts the socket down, so that a reader blocked on it
    /// sees the end at once (the client's reader then fails what was in flight).
    private let shutsDownWhenBatchFails: Bool

    package init(socket: Socket, shutsDownWhenBatchFails: Bool = false) {
        self.socket = socket
        self.shutsDownWhenBatchFails = shutsDownWhenBatchFails
    }

    /// Whether a send failed (the peer went away); later writes are dropped.
    package var hasFailed: Bool { state.withLock { $0.failed } }

    /// Sends `bytes` as one unit, never interleaved with another writer's. Returns `false` once the
    /// connection has failed.
    @discardableResult
    package func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        write(bytes, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// Sends `header` followed by `payload` as one unit, never interleaved with another writer's;
    /// directly, both in one `sendmsg`, when nobody else is sending. Returns `false` once the
    /// connection has failed.
    @discardableResult
    package func write(_ header: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) -> Bool {
        enum Action { case sendDirectly, flush, done, failed }
        let action = state.withLock { state -> Action in
            if state.failed { return .failed }
            if state.flushing {
                state.pending.append(contentsOf: header)
                state.pending.append(contentsOf: payload)
                return .done
            }
            state.flushing = true
            if state.pending.isEmpty { return .sendDirectly }
            state.pending.append(contentsOf: header)
            state.pending.append(contentsOf: payload)
            return .flush
        }
        switch action {
        case .failed:
            return false
        case .done:
            return true
        case .sendDirectly:
            let sent = payload.count == 0 ? socket.sendAll(header) : socket.sendAll(header, payload)
            if !sent {
                fail()
                return false
            }
            return drain()
        case .flush:
            return drain()
        }
    }

    /// What became of ``write(_:file:at:count:sendFileLimit:)``.
    package enum FileWriteOutcome: Equatable, Sendable {
        /// Everything went out, `fromFile` bytes of the data with `sendfile` and the rest copied.
        case sent(fromFile: Int)
        /// Another thread is sending: nothing was sent, the caller sends the message the usual way.
        case busy
        /// The connection failed, now or before; nothing more can be sent.
        case connectionFailed
        /// `header` went out but the file's data could be neither sent nor read: the peer was
        /// promised bytes that cannot come, and the connection is failed.
        case dataUnavailable
    }

    /// Sends what others queued, then `header` followed by `count` bytes of the file open as `file`
    /// from `offset` on, as one unit, never interleaved with another writer's: the data with
    /// `sendfile`, so it is not copied through this process (see ``Socket/sendFile(_:at:count:)``).
    /// Where `sendfile` stops short (a file or socket that does not support it), the rest is read
    /// with `pread` and sent from a buffer. Only when nobody else is sending; otherwise returns
    /// ``FileWriteOutcome/busy`` having sent nothing. `sendFileLimit` makes `sendfile` stop after
    /// that many bytes, for tests of the fallback.
    package func write(
        _ header: UnsafeRawBufferPointer, file: Int32, at offset: UInt64, count: Int, sendFileLimit: Int = .max
    ) -> FileWriteOutcome {
        enum Start { case own, busy, failed }
        let start = state.withLock { state -> Start in
            if state.failed { return .failed }
            if state.flushing { return .busy }
            state.flushing = true
            return .own
        }
        switch start {
        case .failed: return .connectionFailed
        case .busy: return .busy
        case .own: break
        }
        // What appendForBatch left pending was queued first, so it leaves first.
        guard sendPending(releasingTurn: false), socket.sendAll(header) else {
            fail()
            return .connectionFailed
        }
        let fromFile = socket.sendFile(file, at: offset, count: min(count, max(sendFileLimit, 0)))
        if fromFile < count {
            switch sendCopy(of: file, at: offset + UInt64(fromFile), count: count - fromFile) {
            case .sent: break
            case .sendFailed:
                fail()
                return .connectionFailed
            case .readFailed:
                fail()
                return .dataUnavailable
            }
        }
        return drain() ? .sent(fromFile: fromFile) : .connectionFailed
    }

    private enum CopyOutcome { case sent, sendFailed, readFailed }

    /// Reads `count` bytes of `file` at `offset` with `pread`, a MiB at a time, and sends them.
    private func sendCopy(of file: Int32, at offset: UInt64, count: Int) -> CopyOutcome {
        let chunk = min(count, 1 << 20)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var done = 0
        while done < count {
            let wanted = min(chunk, count - done)
            var filled = 0
            while filled < wanted {
                let position = off_t(offset) + off_t(done + filled)
                let result = pread(file, buffer.baseAddress! + filled, wanted - filled, position)
                if result > 0 {
                    filled += result
                } else if result < 0 && errno == EINTR {
                    continue
                } else {
                    return .readFailed
                }
            }
            guard socket.sendAll(UnsafeRawBufferPointer(rebasing: buffer[0..<wanted])) else { return .sendFailed }
            done += wanted
        }
        return .sent
    }

    /// Starts sending `bytes` as one unit without waiting for a full socket: sends what the socket
    /// takes now and returns how many bytes went out, keeping the writer's turn so that nothing else
    /// is sent in between. The caller must then pass the rest (from the returned count on, the same
    /// memory) to ``finishWrite(_:)``, from the same thread. Returns `nil` once the connection has
    /// failed.
    ///
    /// When others' bytes are pending or being sent, it sends like ``write(_:)`` and returns the whole
    /// count.
    package func beginWrite(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let mayStart = state.withLock { state -> Bool? in
            if state.failed { return nil }
            if state.flushing || !state.pending.isEmpty { return false }
            state.flushing = true
            state.turnHeldForRest = true
            return true
        }
        guard let mayStart else { return nil }
        guard mayStart else { return write(bytes) ? bytes.count : nil }
        guard let sent = socket.sendWithoutWaiting(bytes) else {
            fail()
            return nil
        }
        return sent
    }

    /// Sends the rest of a ``beginWrite(_:)`` (what it did not send, from the same memory), then
    /// whatever others queued meanwhile, and gives up the writer's turn. Returns `false` once the
    /// connection has failed.
    @discardableResult
    package func finishWrite(_ rest: UnsafeRawBufferPointer) -> Bool {
        let holdsTurn = state.withLock { state -> Bool in
            defer { state.turnHeldForRest = false }
            return state.turnHeldForRest
        }
        guard holdsTurn else { return !hasFailed }
        if rest.count > 0 && !socket.sendAll(rest) {
            fail()
            return false
        }
        return drain()
    }

    /// Appends `bytes` to be sent when the thread's `InlineResumption` batch ends (or by a flusher
    /// already at work), so that the replies of several requests resumed by one batch of upstream
    /// replies leave in one `send`. Only call it inside a scope. Returns `false` once the
    /// connection has failed.
    @discardableResult
    package func appendForBatch(_ bytes: UnsafeRawBufferPointer) -> Bool {
        appendForBatch(bytes, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// Appends `header` and `payload` to be sent when the thread's `InlineResumption` batch ends (or
    /// by a flusher already at work): nbd-serve's connection thread starts the upstream requests of
    /// one batch of client requests this way, and they leave in one `send`. Returns `false` once the
    /// connection has failed.
    @discardableResult
    package func appendForBatch(_ header: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) -> Bool {
        let flushing = state.withLock { state -> Bool? in
            if state.failed { return nil }
            state.pending.append(contentsOf: header)
            state.pending.append(contentsOf: payload)
            return state.flushing
        }
        guard let flushing else { return false }
        // A flusher at work sends it before it stops; otherwise the batch's end does.
        if !flushing { InlineResumption.atBatchEnd(self) }
        return true
    }

    /// Sends what ``appendForBatch(_:_:)`` left pending, unless a flusher is already at work.
    package func batchEnded() {
        let start = state.withLock { state -> Bool in
            if state.failed || state.flushing || state.pending.isEmpty { return false }
            state.flushing = true
            return true
        }
        if start, !drain(), shutsDownWhenBatchFails {
            socket.shutdownBoth(notifyingPeer: false)
        }
    }

    /// Stops writing after everything already handed to ``write(_:_:)`` is sent: now if nobody is
    /// sending, else by the thread that is, so the end of the stream (and TLS `close_notify`) never
    /// overtakes or interrupts a message. Later writes fail.
    package func closeWriting() {
        let closeNow = state.withLock { state -> Bool in
            if state.flushing {
                state.closeWhenDrained = true
                return false
            }
            state.flushing = true
            state.failed = true
            return true
        }
        if closeNow { socket.shutdownWriting() }
    }

    /// Sends what others appended while this thread was the flusher, then stops being the flusher.
    private func drain() -> Bool {
        sendPending(releasingTurn: true)
    }

    /// Sends what others appended while this thread is the flusher, until nothing is pending. With
    /// `releasingTurn` it then stops being the flusher (or, after ``closeWriting()``, closes the
    /// sending side and stays the flusher for good). Returns `false` if a send failed.
    private func sendPending(releasingTurn: Bool) -> Bool {
        while true {
            let taken = state.withLock { state -> [UInt8]? in
                if state.pending.isEmpty {
                    guard releasingTurn else { return nil }
                    if state.closeWhenDrained {
                        // Stays the flusher for good: nobody sends after the close.
                        state.failed = true
                        return []
                    }
                    state.flushing = false
                    return nil
                }
                let out = state.pending
                state.pending = state.spare
                state.spare = []
                return out
            }
            guard var buffer = taken else { return true }
            if buffer.isEmpty {
                socket.shutdownWriting()
                return true
            }
            let ok = buffer.withUnsafeBytes { socket.sendAll($0) }
            if !ok {
                fail()
                return false
            }
            buffer.removeAll(keepingCapacity: true)
            state.withLock { $0.spare = buffer }
        }
    }

    private func fail() {
        state.withLock { state in
            state.failed = true
            state.flushing = false
            state.turnHeldForRest = false
            state.pending = []
            state.spare = []
        }
    }
}

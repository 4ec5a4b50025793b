import NBDCore
import Synchronization

/// Puts requests from many tasks onto one socket without holding a lock across `send`.
///
/// A writer that finds nobody sending becomes the flusher and sends its header and payload straight
/// from the caller's memory with one `sendmsg`; a writer that finds a flusher at work appends a copy
/// under a short lock and returns, and the flusher sends what accumulated before it stops. Two reused
/// buffers swap roles, so steady state allocates nothing. (NBDServer's combining writer works the
/// same way for replies.)
final class RequestWriter: Sendable, InlineResumption.BatchEndAction {
    private struct State {
        var pending: [UInt8] = []
        var spare: [UInt8] = []
        var flushing = false
        var failed = false
        /// Stop writing (``closeWriting()``) once the flusher has sent what is pending.
        var closeWhenDrained = false
    }

    private let socket: ClientSocket
    private let state = LockedValue(State())

    init(socket: ClientSocket) {
        self.socket = socket
    }

    /// Sends `header` followed by `payload`, never interleaved with another request. Returns
    /// `false` once sending failed (the caller closes the connection).
    func send(_ header: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) -> Bool {
        enum Action { case sendDirectly, done, failed }
        let action = state.withLock { state -> Action in
            if state.failed { return .failed }
            if state.flushing {
                // Pending bytes exist only while someone is flushing, so this keeps request order.
                state.pending.append(contentsOf: header)
                state.pending.append(contentsOf: payload)
                return .done
            }
            state.flushing = true
            return .sendDirectly
        }
        switch action {
        case .failed:
            return false
        case .done:
            return true
        case .sendDirectly:
            guard socket.sendAll(header, payload) else {
                fail()
                return false
            }
            return drain()
        }
    }

    /// Appends `header` and `payload` to be sent when the current thread's `InlineResumption` batch
    /// ends (or by a flusher already at work): nbd-serve's connection thread starts the requests of
    /// one batch of client requests this way, and they leave in one `send`. Returns `false` once
    /// sending failed.
    func appendForBatch(_ header: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) -> Bool {
        let flushing = state.withLock { state -> Bool? in
            if state.failed { return nil }
            state.pending.append(contentsOf: header)
            state.pending.append(contentsOf: payload)
            return state.flushing
        }
        guard let flushing else { return false }
        if !flushing { InlineResumption.atBatchEnd(self) }
        return true
    }

    /// Sends what ``appendForBatch(_:_:)`` left pending, unless a flusher is already at work.
    func batchEnded() {
        let start = state.withLock { state -> Bool in
            if state.failed || state.flushing || state.pending.isEmpty { return false }
            state.flushing = true
            return true
        }
        if start, !drain() {
            // The reader sees the connection end and fails what was in flight.
            socket.shutdownBoth()
        }
    }

    /// Sends what others appended while this thread was the flusher, then stops being the flusher.
    private func drain() -> Bool {
        while true {
            let taken = state.withLock { state -> [UInt8]? in
                if state.pending.isEmpty {
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
            guard buffer.withUnsafeBytes({ socket.sendAll($0) }) else {
                fail()
                return false
            }
            buffer.removeAll(keepingCapacity: true)
            state.withLock { $0.spare = buffer }
        }
    }

    /// Stops writing after everything already handed to ``send(_:_:)`` is sent: now if nobody
    /// is sending, else by the thread that is, so the end of the stream (and TLS `close_notify`)
    /// never overtakes or interrupts a request. Later sends fail.
    func closeWriting() {
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

    private func fail() {
        state.withLock { state in
            state.failed = true
            state.flushing = false
            state.pending = []
            state.spare = []
        }
    }
}

import NBDCore
import Synchronization

/// The peer of an in-memory ``Socket``: a client whose bytes are fixed in advance. The fuzz targets
/// use it to run the real handshake and request loop without sockets.
///
/// `receive` hands out the input at most `chunkLimit` bytes at a time (so partial reads reach the
/// buffering code) and reports end of stream when it runs out. `send` accepts and counts replies,
/// and fails once `sendLimit` bytes were sent (a client that went away).
package final class MemoryTransport: Sendable {
    private struct State {
        var input: [UInt8]
        var position = 0
        var sent = 0
    }

    private let state: LockedValue<State>
    private let chunkLimit: Int
    private let sendLimit: Int
    private let pauses: [Int]

    /// - Parameters:
    ///   - input: Everything the client sends, in order.
    ///   - chunkLimit: The most one `receive` returns.
    ///   - sendLimit: The number of reply bytes after which sending fails.
    ///   - pauses: Offsets in `input` that one `receive` never reads across: where a real client
    ///     waits for a reply before it sends more (after `NBD_OPT_STARTTLS`).
    package init(input: [UInt8], chunkLimit: Int = .max, sendLimit: Int = .max, pauses: [Int] = []) {
        state = LockedValue(State(input: input))
        self.chunkLimit = max(1, chunkLimit)
        self.sendLimit = sendLimit
        self.pauses = pauses.sorted()
    }

    /// The number of reply bytes the server sent.
    package var sentByteCount: Int { state.withLock { $0.sent } }

    package func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        state.withLock { state in
            let position = state.position
            let end = pauses.first { $0 > position } ?? state.input.count
            let count = min(buffer.count, chunkLimit, min(end, state.input.count) - position)
            guard count > 0 else { return 0 }
            state.input.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + state.position, byteCount: count)
            }
            state.position += count
            return count
        }
    }

    package func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        state.withLock { state in
            guard state.sent + bytes.count <= sendLimit else { return false }
            state.sent += bytes.count
            return true
        }
    }
}

/// Reads a socket through a large reused buffer, so that one `recv` picks up every reply that has
/// arrived and parsing works on bytes in memory. Owned by the connection's reader thread.
///
/// The same shape as NBDServer's reader, re-implemented because the client may not import the server.
struct ReceiveBuffer: ~Copyable {
    private let socket: ClientSocket
    private let storage: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0

    init(socket: ClientSocket, capacity: Int) {
        self.socket = socket
        self.storage = .allocate(byteCount: max(capacity, 4096), alignment: 16)
    }

    deinit {
        storage.deallocate()
    }

    /// The buffer's capacity: the longest reply header plus metadata that can be parsed.
    var capacity: Int { storage.count }

    /// The unread bytes, valid until the next mutating call.
    var unread: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[start..<end])
    }

    /// Ensures at least `count` bytes (at most ``capacity``) are buffered, blocking in `recv`.
    /// Returns `false` at end of stream or on error.
    mutating func fill(atLeast count: Int) -> Bool {
        precondition(count <= storage.count)
        if end - start >= count { return true }
        if storage.count - start < count {
            let length = end - start
            if length > 0 {
                storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: length)
            }
            start = 0
            end = length
        }
        while end - start < count {
            let received = socket.receive(into: UnsafeMutableRawBufferPointer(rebasing: storage[end...]))
            if received <= 0 { return false }
            end += received
        }
        return true
    }

    /// Consumes `count` buffered bytes.
    mutating func consume(_ count: Int) {
        precondition(count <= end - start)
        start += count
        if start == end {
            start = 0
            end = 0
        }
    }

    /// Fills `destination` completely, first from the buffer, then straight from the socket, so
    /// large payloads are not copied twice. `nil` reads and drops the bytes. Returns `false` at end
    /// of stream or on error.
    mutating func read(_ count: Int, into destination: UnsafeMutableRawPointer?) -> Bool {
        let fromBuffer = min(count, end - start)
        if fromBuffer > 0 {
            destination?.copyMemory(from: storage.baseAddress! + start, byteCount: fromBuffer)
            consume(fromBuffer)
        }
        var done = fromBuffer
        while done < count {
            let received: Int
            if let destination {
                received = socket.receive(
                    into: UnsafeMutableRawBufferPointer(start: destination + done, count: count - done))
            } else {
                received = socket.receive(
                    into: UnsafeMutableRawBufferPointer(rebasing: storage[0..<min(storage.count, count - done)]))
            }
            if received <= 0 { return false }
            done += received
        }
        return true
    }
}

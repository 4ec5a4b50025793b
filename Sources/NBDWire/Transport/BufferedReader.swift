/// Reads a socket through a large reused buffer, so that one `recv` picks up every message that has
/// arrived (the server's requests, the client's replies), and parsing works on bytes already in memory.
///
/// Owned by one connection thread (the server's connection, the client's reply reader); not shared.
package struct BufferedReader: ~Copyable {
    private let socket: Socket
    private let storage: UnsafeMutableRawBufferPointer
    /// Start of the unread bytes.
    private var start = 0
    /// End of the unread bytes.
    private var end = 0

    package init(socket: Socket, capacity: Int) {
        self.socket = socket
        self.storage = .allocate(byteCount: max(capacity, 4096), alignment: 16)
    }

    deinit {
        storage.deallocate()
    }

    /// The number of bytes read from the socket and not consumed yet.
    package var buffered: Int { end - start }

    /// The buffer's capacity: the most that ``peek(_:)`` can return.
    package var capacity: Int { storage.count }

    /// The unread bytes, valid until the next mutating call.
    package var unread: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[start..<end])
    }

    /// Ensures at least `count` bytes (at most ``capacity``) are buffered, blocking in `recv`.
    /// Returns `false` at end of stream or on error.
    package mutating func fill(atLeast count: Int) -> Bool {
        precondition(count <= storage.count)
        if end - start >= count { return true }
        if start > 0 && storage.count - start < count {
            // Move the partial message to the front so it can be completed in place.
            let length = end - start
            if length > 0 {
                storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: length)
            }
            start = 0
            end = length
        }
        while end - start < count {
            if end == storage.count {
                let length = end - start
                storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: length)
                start = 0
                end = length
            }
            let received = socket.receive(into: UnsafeMutableRawBufferPointer(rebasing: storage[end...]))
            if received <= 0 { return false }
            end += received
        }
        return true
    }

    /// Consumes `count` buffered bytes.
    package mutating func consume(_ count: Int) {
        precondition(count <= end - start)
        start += count
        if start == end {
            start = 0
            end = 0
        }
    }

    /// Fills `destination` completely: first from the buffer, then straight from the socket (large
    /// payloads are not copied twice). Returns `false` at end of stream or on error.
    package mutating func read(into destination: UnsafeMutableRawBufferPointer) -> Bool {
        let fromBuffer = min(destination.count, end - start)
        if fromBuffer > 0 {
            destination.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: fromBuffer)
            consume(fromBuffer)
        }
        var done = fromBuffer
        while done < destination.count {
            let received = socket.receive(into: UnsafeMutableRawBufferPointer(rebasing: destination[done...]))
            if received <= 0 { return false }
            done += received
        }
        return true
    }

    /// Fills `count` bytes at `destination` like ``read(into:)``; `nil` reads and drops them (the
    /// client's use: a reply's payload for a request that was given up).
    package mutating func read(_ count: Int, into destination: UnsafeMutableRawPointer?) -> Bool {
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

    /// Reads and drops `count` bytes (the payload of a request that is refused).
    package mutating func discard(_ count: UInt64) -> Bool {
        var remaining = count
        while remaining > 0 {
            if end == start {
                if !fill(atLeast: 1) { return false }
            }
            let step = Int(min(UInt64(end - start), remaining))
            consume(step)
            remaining -= UInt64(step)
        }
        return true
    }
}

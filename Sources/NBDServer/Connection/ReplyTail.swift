import NBDWire

/// A batch of replies whose end is still to be sent: the connection started sending it without
/// waiting for a full socket and performs the next read meanwhile.
///
/// A Unix socket queues little ahead of the client (208 KiB by default, and TLS connections keep
/// the default). When the connection sent a 1 MiB reply whole and only then copied the next read
/// into its buffer, a client that drains faster than the copy took ran dry and went to sleep; with
/// TLS both sides use a core each, and that wake-up was what kept 1 MiB reads behind nbdkit's (whose
/// threads copy the next read while one of them sends). So the connection sends what the socket takes,
/// performs the next read into its other buffer, and only then waits for the rest.
///
/// Everything that sends, or that may wait for the client, calls ``finish(on:)`` first, so replies
/// keep their order and a client never waits for the end of a reply the server holds back.
struct ReplyTail: ~Copyable {
    private var buffer = OutputBuffer(capacity: 0)
    /// Where the unsent rest of `buffer` begins; `nil` when nothing is pending.
    private var restStart: Int?

    /// Whether part of a batch is still to be sent.
    var isPending: Bool { restStart != nil }

    /// Takes `output`'s bytes and starts sending them; `output` is left empty (with the storage this
    /// tail had), ready for the next reply. Returns `false` once the connection has failed.
    mutating func start(_ output: inout OutputBuffer, on writer: CombiningWriter) -> Bool {
        precondition(restStart == nil, "the previous tail must be finished first")
        swap(&buffer, &output)
        guard let sent = writer.beginWrite(buffer.bytes) else {
            buffer.removeAll()
            return false
        }
        restStart = sent
        return true
    }

    /// Sends the rest, waiting as needed, and releases the writer; keeps at most `retainedCapacity`
    /// bytes of buffer. Returns `false` once the connection has failed.
    mutating func finish(on writer: CombiningWriter, retainedCapacity: Int) -> Bool {
        guard let start = restStart else { return true }
        restStart = nil
        let ok = writer.finishWrite(UnsafeRawBufferPointer(rebasing: buffer.bytes[start...]))
        buffer.removeAll()
        buffer.shrink(to: retainedCapacity)
        return ok
    }
}

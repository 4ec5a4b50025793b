import NBDCore

/// How far the replies to one request have come: the chunks seen so far, the first error, and the
/// extents. Pure, like ``ReplyParser``; the connection keeps one per request in flight.
package struct ReplyProgress: Sendable {
    /// The request being answered.
    package let request: RequestRecord
    private var covered: UInt64 = 0
    private var sawChunk = false
    private var error: NBDError?
    private var extents: [Extent]?

    package init(request: RequestRecord) {
        self.request = request
    }

    /// Applies one event (already checked by ``ReplyParser``) and returns the request's outcome once
    /// the reply is complete, or `nil` while more chunks are due.
    ///
    /// Throws when the sequence breaks the protocol: overlapping data, a read reply that does not
    /// cover the request, a second block status chunk, a simple reply after chunks.
    package mutating func accept(_ event: ReplyEvent) throws(NBDError) -> Result<[Extent], NBDError>? {
        switch event {
        case .simple(_, let errno):
            guard !sawChunk else {
                throw ReplyParser.violation("a simple reply to a request already answered in chunks")
            }
            if errno != 0 { return .failure(serverError(errno: errno, message: "")) }
            if request.command == .blockStatus {
                throw ReplyParser.violation("a simple reply to a block status request")
            }
            return .success([])
        case .data(_, _, let count, let done), .hole(_, _, let count, let done):
            sawChunk = true
            covered += UInt64(count)
            guard covered <= UInt64(request.length) else {
                throw ReplyParser.violation("read chunks covering more than the \(request.length) bytes requested")
            }
            return done ? try finish() : nil
        case .blockStatus(_, let list, let done):
            sawChunk = true
            guard extents == nil else { throw ReplyParser.violation("two block status chunks for one request") }
            extents = list
            return done ? try finish() : nil
        case .error(_, let errno, let message, let done):
            sawChunk = true
            if error == nil { error = serverError(errno: errno, message: message) }
            return done ? try finish() : nil
        case .none:
            sawChunk = true
            return try finish()
        }
    }

    private func finish() throws(NBDError) -> Result<[Extent], NBDError> {
        if let error { return .failure(error) }
        switch request.command {
        case .read:
            guard covered == UInt64(request.length) else {
                throw ReplyParser.violation("a read reply covering \(covered) of the \(request.length) bytes requested")
            }
        case .blockStatus:
            guard let extents, !extents.isEmpty else {
                throw ReplyParser.violation("a block status reply without extents")
            }
            return .success(extents)
        default:
            break
        }
        return .success([])
    }

    /// The error for the server's `errno`, with its message or one that names the request.
    private func serverError(errno: UInt32, message: String) -> NBDError {
        let code = NBDError.Code(wireErrno: errno)
        if !message.isEmpty { return NBDError(code, message) }
        return NBDError(
            code,
            "the NBD server failed the \(request.command) of \(request.length) bytes at offset \(request.offset) with \(code.name)"
        )
    }
}

/// What one request's callbacks see and record: where the body goes (or comes from), how much
/// moved, and the response headers NBDCurl checks. Owned by one ``CurlHandle`` and used only by
/// the thread performing its transfer.
final class TransferState {
    /// Where a response body is copied, or `nil` to take none (a HEAD request).
    var destination: UnsafeMutableRawBufferPointer?
    /// Bytes of body received so far.
    var received = 0
    /// Whether the body was longer than ``destination``.
    var overflowed = false
    /// The status code the body must come with; any other body is not taken.
    var expectedStatus = 206
    /// The upload's bytes, and how many were sent.
    var source: UnsafeRawBufferPointer?
    var sent = 0

    /// The status of the last response's status line (after redirects, the final one).
    var status = 0
    /// The last response's `Content-Range` and `Accept-Ranges` values.
    var contentRange: String?
    var acceptRanges: String?

    func reset(destination: UnsafeMutableRawBufferPointer?, expectedStatus: Int) {
        self.destination = destination
        self.expectedStatus = expectedStatus
        received = 0
        overflowed = false
        source = nil
        sent = 0
        status = 0
        contentRange = nil
        acceptRanges = nil
    }

    /// Records a response header line; a status line starts a new response (a redirect's, or
    /// the final one).
    func header(_ line: Substring) {
        if line.hasPrefix("HTTP/") {
            let fields = line.split(separator: " ", maxSplits: 2)
            status = fields.count > 1 ? Int(fields[1]) ?? 0 : 0
            contentRange = nil
            acceptRanges = nil
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = String(line[line.index(after: colon)...].trimmingCharacters(in: " \t\r\n"))
        switch name {
        case "content-range": contentRange = value
        case "accept-ranges": acceptRanges = value
        default: break
        }
    }

    /// Takes `bytes` of body; returns `false` to make libcurl abort the transfer (a body that
    /// comes with the wrong status, or is longer than asked for).
    func body(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard status == expectedStatus, let destination else { return false }
        guard bytes.count <= destination.count - received else {
            overflowed = true
            return false
        }
        if let base = destination.baseAddress, let from = bytes.baseAddress, !bytes.isEmpty {
            (base + received).copyMemory(from: from, byteCount: bytes.count)
        }
        received += bytes.count
        return true
    }

    /// Fills `buffer` with the next upload bytes; returns how many.
    func upload(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let source, let base = source.baseAddress, let to = buffer.baseAddress else { return 0 }
        let count = min(buffer.count, source.count - sent)
        to.copyMemory(from: base + sent, byteCount: count)
        sent += count
        return count
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        let trimmedFront = drop { set.contains($0) }
        var end = trimmedFront.endIndex
        while end > trimmedFront.startIndex, set.contains(trimmedFront[trimmedFront.index(before: end)]) {
            end = trimmedFront.index(before: end)
        }
        return Substring(trimmedFront[trimmedFront.startIndex..<end])
    }
}

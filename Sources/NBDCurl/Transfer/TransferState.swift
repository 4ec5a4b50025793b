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
    /// The largest piece libcurl received from the socket at once, over every request, while
    /// receives are observed (``CurlHandle/observeReceives()``; tests only).
    var largestReceive = 0

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
    /// the final one). Works on the bytes: only the two headers NBDCurl reads become strings, so
    /// the other lines of every response cost no allocation.
    func header(_ line: UnsafeRawBufferPointer) {
        if Self.hasPrefix(line, "HTTP/") {
            status = Self.statusCode(line)
            contentRange = nil
            acceptRanges = nil
        } else if Self.hasPrefix(line, "content-range:") {
            contentRange = Self.value(line, after: 14)
        } else if Self.hasPrefix(line, "accept-ranges:") {
            acceptRanges = Self.value(line, after: 14)
        }
    }

    /// Whether `line` starts with `prefix`, ASCII letters compared without case.
    private static func hasPrefix(_ line: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        guard line.count >= prefix.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount)
        for index in 0..<expected.count where line[index] | 0x20 != expected[index] | 0x20 {
            return false
        }
        return true
    }

    /// The three digits after the first space of a status line (`HTTP/1.1 206 Partial Content`).
    private static func statusCode(_ line: UnsafeRawBufferPointer) -> Int {
        guard let space = line.firstIndex(of: UInt8(ascii: " ")) else { return 0 }
        var code = 0
        var index = space + 1
        while index < line.count, line[index] >= UInt8(ascii: "0"), line[index] <= UInt8(ascii: "9") {
            code = code * 10 + Int(line[index] - UInt8(ascii: "0"))
            index += 1
        }
        return code
    }

    /// The header's value after `offset`, without surrounding spaces, tabs and the line end.
    private static func value(_ line: UnsafeRawBufferPointer, after offset: Int) -> String {
        let blank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
        var start = offset
        var end = line.count
        while start < end, blank(line[start]) { start += 1 }
        while end > start, blank(line[end - 1]) { end -= 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: line[start..<end]), as: UTF8.self)
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

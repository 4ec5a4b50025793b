import XCTest

/// Checks the contract of a send that does not wait for a full socket (`Socket.sendWithoutWaiting`,
/// `SecureSession.sendWithoutWaiting`), for any sender: 1 MiB through a socket pair's default buffer
/// stops part-way (having sent something), and the rest, sent afterwards from the same memory while
/// the peer reads, arrives whole and in order.
///
/// `sendWithoutWaiting` runs on a thread of its own, so one that waits for the full socket fails the
/// test instead of hanging it; the peer reads on another (`receive` is its receive call).
public func checkSendingWithoutWaiting(
    sendWithoutWaiting: @escaping @Sendable (UnsafeRawBufferPointer) -> Int?,
    sendRest: (UnsafeRawBufferPointer) -> Bool,
    receive: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Int,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    let message = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
    let attempt = ThreadResult { message.withUnsafeBytes { sendWithoutWaiting($0) } }
    let result = attempt.value("sendWithoutWaiting to return while the socket is full", file: file, line: line)
    let received = ThreadResult { receiveAll(message.count, using: receive) }
    let sent = try XCTUnwrap(try XCTUnwrap(result, file: file, line: line), file: file, line: line)
    XCTAssertGreaterThan(sent, 0, "an empty socket takes something", file: file, line: line)
    XCTAssertLessThan(
        sent, message.count, "a socket pair's default buffer holds far less than 1 MiB", file: file, line: line)
    XCTAssertTrue(message.withUnsafeBytes { sendRest(UnsafeRawBufferPointer(rebasing: $0[sent...])) }, file: file, line: line)
    XCTAssertTrue(
        received.value("the peer to receive the whole message", file: file, line: line) == message,
        "every byte once, in order", file: file, line: line)
}

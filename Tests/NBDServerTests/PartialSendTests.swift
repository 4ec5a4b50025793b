import Dispatch
import NBDCore
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

@testable import NBDServer

#if canImport(Glibc)
    import Glibc
#endif

/// Sending without waiting for a full socket (`Socket.sendWithoutWaiting`) and the writer's turn
/// held from `CombiningWriter.beginWrite` to `finishWrite`, which let a connection prepare the next
/// reply while the client drains the last one.
final class PartialSendTests: XCTestCase {
    private var descriptors: [Int32] = []

    override func tearDown() {
        for descriptor in descriptors { close(descriptor) }
        descriptors = []
    }

    /// A socket pair with the kernel's default buffers: the server end as a `Socket`, and the other
    /// end's descriptor.
    private func socketPair() -> (Socket, Int32) {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        descriptors.append(pair[1])
        return (Socket(adopting: pair[0]), pair[1])
    }

    /// Receives `count` bytes from `descriptor` on a thread of its own.
    private func drain(_ descriptor: Int32, count: Int) -> ThreadResult<[UInt8]> {
        ThreadResult { receiveAll(count) { recv(descriptor, $0.baseAddress, $0.count, 0) } }
    }

    func testTheSocketSendsWhatFitsWithoutWaitingAndTheRestAfterwards() throws {
        let (socket, peer) = socketPair()
        try checkSendingWithoutWaiting(
            sendWithoutWaiting: { socket.sendWithoutWaiting($0) }, sendRest: { socket.sendAll($0) },
            receive: { recv(peer, $0.baseAddress, $0.count, 0) })
    }

    func testAWriteWhileTheWriterTurnIsHeldFollowsTheRest() throws {
        let (socket, peer) = socketPair()
        let writer = CombiningWriter(socket: socket)
        let first = [UInt8](repeating: 0xAA, count: 1 << 20)
        let second = [UInt8](repeating: 0xBB, count: 4096)
        let attempt = ThreadResult { first.withUnsafeBytes { writer.beginWrite($0) } }
        guard let result = attempt.value("beginWrite to return while the socket is full") else {
            // Unblock the stuck send so the test ends.
            _ = drain(peer, count: first.count).value("the peer to drain")
            return
        }
        let sent = try XCTUnwrap(result)
        XCTAssertLessThan(sent, first.count, "the socket is full before the end")

        // Another thread replies meanwhile: its bytes wait behind the rest instead of being sent
        // (which would interleave them with the unfinished message, or block on the full socket).
        _ = ThreadResult { second.withUnsafeBytes { writer.write($0) } }
            .value("the other write to return while the socket is full")

        let received = drain(peer, count: first.count + second.count)
        XCTAssertTrue(first.withUnsafeBytes { writer.finishWrite(UnsafeRawBufferPointer(rebasing: $0[sent...])) })
        XCTAssertTrue(
            received.value("the peer to receive both messages") == first + second, "the rest first, then the other write")
        XCTAssertFalse(writer.hasFailed)
    }

    func testBeginWriteBehindQueuedBytesSendsEverythingInOrder() throws {
        let (socket, peer) = socketPair()
        let writer = CombiningWriter(socket: socket)
        // Bytes appended for the end of a batch that has not ended yet are pending, nobody sending.
        let early = [UInt8](repeating: 0x11, count: 100)
        InlineResumption.enter()
        XCTAssertTrue(early.withUnsafeBytes { writer.appendForBatch($0) })
        let message = [UInt8](repeating: 0x22, count: 1000)
        let received = drain(peer, count: early.count + message.count)
        let sent = message.withUnsafeBytes { writer.beginWrite($0) }
        XCTAssertEqual(sent, message.count, "behind others' bytes it sends everything, as write does")
        XCTAssertTrue(writer.finishWrite(UnsafeRawBufferPointer(start: nil, count: 0)))
        InlineResumption.leave()
        XCTAssertTrue(received.value("the peer to receive both") == early + message)
    }
}

import NBDCore
import NBDTestSupport
import NBDWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// What the client asks of the shared combining writer: a header and its payload as one unit, and
/// the end of the stream only after everything handed over before it.
final class CombiningWriterTests: XCTestCase {
    private var descriptors: [Int32] = []

    override func tearDown() {
        for descriptor in descriptors { close(descriptor) }
        descriptors = []
    }

    private func socketPair() -> (Socket, Int32) {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        descriptors.append(pair[1])
        return (Socket(adopting: pair[0]), pair[1])
    }

    /// Everything the peer receives until end of stream, read on a thread of its own.
    private func receiveUntilEnd(_ descriptor: Int32) -> ThreadResult<[UInt8]> {
        ThreadResult {
            var all: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                if count <= 0 { return all }
                all += chunk[0..<count]
            }
        }
    }

    func testHeaderAndPayloadArriveTogetherAndTheCloseComesAfterThem() throws {
        let (socket, peer) = socketPair()
        let writer = CombiningWriter(socket: socket, shutsDownWhenBatchFails: true)
        let received = receiveUntilEnd(peer)
        let header = [UInt8](repeating: 0x11, count: 28)
        let payload = [UInt8](repeating: 0x22, count: 300_000)
        let sent = header.withUnsafeBytes { header in payload.withUnsafeBytes { writer.write(header, $0) } }
        XCTAssertTrue(sent)
        XCTAssertTrue(header.withUnsafeBytes { writer.write($0, UnsafeRawBufferPointer(start: nil, count: 0)) })
        writer.closeWriting()
        XCTAssertEqual(received.value("the peer to see the end of the stream"), header + payload + header)
        XCTAssertFalse(header.withUnsafeBytes { writer.write($0) }, "a write after the close was accepted")
    }

    func testBatchedMessagesLeaveWhenTheBatchEnds() throws {
        let (socket, peer) = socketPair()
        let writer = CombiningWriter(socket: socket)
        let received = receiveUntilEnd(peer)
        let first = [UInt8](repeating: 0x33, count: 28)
        let second = [UInt8](repeating: 0x44, count: 4096)
        InlineResumption.enter()
        XCTAssertTrue(first.withUnsafeBytes { header in second.withUnsafeBytes { writer.appendForBatch(header, $0) } })
        XCTAssertTrue(first.withUnsafeBytes { writer.appendForBatch($0) })
        InlineResumption.leave()
        writer.closeWriting()
        XCTAssertEqual(received.value("the peer to see the end of the stream"), first + second + first)
    }
}

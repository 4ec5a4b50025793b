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

    /// A temporary file holding `bytes`, open read-only (or write-only, which no read can use).
    private func file(_ bytes: [UInt8], writeOnly: Bool = false) -> Int32 {
        var template = Array("/tmp/nbd-writer-file-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }, bytes.count)
        let reopened = template.withUnsafeBufferPointer { Glibc.open($0.baseAddress!, writeOnly ? O_WRONLY : O_RDONLY) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        close(fd)
        descriptors.append(reopened)
        return reopened
    }

    func testFileDataFollowsItsHeaderWithSendfileOrACopyWhereSendfileStops() throws {
        let contents = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let source = file(contents)
        for limit in [Int.max, 1000, 0] {
            let (socket, peer) = socketPair()
            let received = receiveUntilEnd(peer)
            let writer = CombiningWriter(socket: socket)
            let header: [UInt8] = [1, 2, 3, 4, 5]
            let outcome = header.withUnsafeBytes {
                writer.write($0, file: source, at: 4097, count: 200_001, sendFileLimit: limit)
            }
            XCTAssertEqual(outcome, .sent(fromFile: min(limit, 200_001)))
            writer.closeWriting()
            XCTAssertEqual(
                received.value("the peer's bytes"), header + contents[4097..<(4097 + 200_001)], "limit \(limit)")
        }
    }

    func testUnreadableFileDataFailsTheConnectionAfterItsHeader() throws {
        let source = file([UInt8](repeating: 9, count: 100_000), writeOnly: true)
        let (socket, peer) = socketPair()
        let received = receiveUntilEnd(peer)
        let writer = CombiningWriter(socket: socket)
        let outcome = [UInt8](repeating: 1, count: 16).withUnsafeBytes {
            writer.write($0, file: source, at: 0, count: 70_000)
        }
        XCTAssertEqual(outcome, .dataUnavailable)
        XCTAssertTrue(writer.hasFailed)
        socket.shutdownBoth()
        XCTAssertEqual(received.value("the peer's bytes"), [UInt8](repeating: 1, count: 16), "only the header")
    }

    func testOnlyPlainKernelSocketsSendFiles() throws {
        let (socket, _) = socketPair()
        XCTAssertTrue(socket.isKernel)
        let memory = Socket(memory: MemoryTransport(input: []))
        XCTAssertFalse(memory.isKernel)
        XCTAssertEqual(memory.sendFile(0, at: 0, count: 10), 0)
        let secure = Socket(secure: PlainSession(), over: socket)
        XCTAssertFalse(secure.isKernel, "TLS encrypts what it sends: never sendfile")
        XCTAssertEqual(secure.sendFile(0, at: 0, count: 10), 0)
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

/// A session that does nothing: what a TLS socket looks like to ``Socket``.
private final class PlainSession: WireSession {
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int { 0 }
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool { true }
    func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> Int? { bytes.count }
    func close() {}
}

import Dispatch
import NBDCore
import NBDServer
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// `TLSSession.receive(into:)` returns every complete record that has already arrived, not one
/// record per call, and still reports the end of the session after the data that preceded it.
final class TLSSessionReadAheadTests: TLSSessionPairTestCase {
    private func send(_ text: String, from session: TLSSession) {
        let bytes = Array(text.utf8)
        XCTAssertTrue(bytes.withUnsafeBytes { session.send($0) })
    }

    private func receive(_ session: any SecureSession, capacity: Int) -> (Int, String) {
        var buffer = [UInt8](repeating: 0, count: capacity)
        let count = buffer.withUnsafeMutableBytes { session.receive(into: $0) }
        return (count, String(decoding: buffer.prefix(max(0, count)), as: UTF8.self))
    }

    func testOneReceiveReturnsEveryRecordThatHasArrived() throws {
        let (server, client) = try connectedSessions()
        // Three sends, three records; all are in the socket before the server receives.
        send("one", from: client)
        send("two", from: client)
        send("three", from: client)
        let (count, text) = receive(server, capacity: 64 << 10)
        XCTAssertEqual(count, 11)
        XCTAssertEqual(text, "onetwothree", "one receive, every record already received")
    }

    func testSmallBuffersGetEverythingInOrder() throws {
        let (server, client) = try connectedSessions()
        let message = (0..<200).map { "record \($0);" }
        for part in message { send(part, from: client) }
        var received = ""
        while received.utf8.count < message.joined().utf8.count {
            let (count, text) = receive(server, capacity: 5)
            XCTAssertGreaterThan(count, 0)
            guard count > 0 else { return }
            received += text
        }
        XCTAssertEqual(received, message.joined())
    }

    func testTheEndOfTheSessionIsReportedAfterTheDataBeforeIt() throws {
        let (server, client) = try connectedSessions()
        send("last", from: client)
        client.close()  // close_notify right behind the data
        shutdown(descriptors[1], Int32(SHUT_WR))
        let (count, text) = receive(server, capacity: 1024)
        XCTAssertEqual(count, 4)
        XCTAssertEqual(text, "last")
        XCTAssertEqual(receive(server, capacity: 1024).0, 0, "then the end of the session")
    }

    func testLargeTransfersArriveIntact() throws {
        let (server, client) = try connectedSessions()
        let size = 1 << 20
        let data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
        let sender = DispatchSemaphore(value: 0)
        let sent = LockedValue(false)
        Thread.detachNewThread {
            let ok = data.withUnsafeBytes { client.send($0) }
            sent.withLock { $0 = ok }
            sender.signal()
        }
        var received: [UInt8] = []
        received.reserveCapacity(size)
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while received.count < size {
            let count = buffer.withUnsafeMutableBytes { server.receive(into: $0) }
            XCTAssertGreaterThan(count, 0)
            guard count > 0 else { break }
            received += buffer.prefix(count)
        }
        sender.waitOrFail("the client's send")
        XCTAssertTrue(sent.withLock { $0 })
        XCTAssertEqual(received.count, size)
        XCTAssertTrue(received == data, "1 MiB through the read-ahead unchanged")
    }
}

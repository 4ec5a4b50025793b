import Dispatch
import NBDBackends
import NBDCore
import NBDServer
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// `TLSSession.sendWithoutWaiting(_:)` stops at a full socket, and the rest sent afterwards (GnuTLS
/// first sends the record it kept back) arrives whole and in order.
final class TLSSendWithoutWaitingTests: TLSSessionPairTestCase {
    private static let message = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 10) }

    /// Receives `count` plaintext bytes through `session` on a thread of its own.
    private func drain(_ session: TLSSession, count: Int) -> ThreadResult<[UInt8]> {
        ThreadResult { receiveAll(count) { session.receive(into: $0) } }
    }

    func testSendingStopsAtAFullSocketAndTheRestFollowsInOrder() throws {
        let (server, client) = try connectedSessions()
        try checkSendingWithoutWaiting(
            sendWithoutWaiting: { server.sendWithoutWaiting($0) }, sendRest: { server.send($0) },
            receive: { client.receive(into: $0) })

        // The session still works both ways afterwards.
        XCTAssertTrue(Array("after".utf8).withUnsafeBytes { server.send($0) })
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = buffer.withUnsafeMutableBytes { client.receive(into: $0) }
        XCTAssertEqual(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self), "after")
    }

    func testWhatFitsIsSentWhole() throws {
        let (server, client) = try connectedSessions()
        let small = Array(Self.message.prefix(50_000))
        XCTAssertEqual(small.withUnsafeBytes { server.sendWithoutWaiting($0) }, small.count)
        XCTAssertTrue(drain(client, count: small.count).value("the client to receive the message") == small)
    }
}

/// Over TLS too, a connection performs the next read while the end of a large reply waits for the
/// client, and the replies arrive whole and in order.
final class TLSOverlappedReadTests: TLSServerTestCase {
    private static let mebibyte = ReadOverlapScenario.mebibyte

    func testTheNextReadRunsWhileALargeReplyWaitsForTheClient() throws {
        let watch = ReadWatch()
        let provider = FilterStack([ReadWatchLayer(watch: watch)], over: try MemoryBackendProvider(size: 4 << 20))
        // Reads count as quick whatever they take, so that the overlap is checked, not how fast
        // this machine copies 1 MiB (under a sanitizer on a loaded machine, more than the 1 ms
        // default limit, which turns the overlap off: OverlappedReadTests checks that part).
        let (path, _) = try startServer(tls: .require, provider: provider) { $0.overlappedReadLimit = .seconds(3600) }
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.startTLS(try clientCertificates)
        try client.sendOption(RawTLSClient.Option.go, RawTLSClient.infoData())
        XCTAssertEqual(try client.readOptionReplies().last?.type, RawTLSClient.Reply.ack)
        for part in 0..<4 {
            let start = part * Self.mebibyte
            try client.sendRequest(
                1, offset: UInt64(start), length: UInt32(Self.mebibyte), cookie: 100,
                payload: Array(ReadOverlapScenario.pattern[start..<(start + Self.mebibyte)]))
            XCTAssertEqual(try client.readSimpleReplyHeader().error, 0)
        }
        // A TLS connection keeps the kernel's default send buffer (208 KiB): 1 MiB does not fit.
        let scenario = ReadOverlapScenario(
            sendReads: { mebibytes in
                var requests: [UInt8] = []
                for mebibyte in mebibytes {
                    requests += Array.be(RawTLSClient.requestMagic) + Array.be(UInt16(0)) + Array.be(UInt16(0))
                    requests += Array.be(UInt64(mebibyte + 1)) + Array.be(UInt64(mebibyte * Self.mebibyte))
                    requests += Array.be(UInt32(Self.mebibyte))
                }
                try client.send(requests)
            },
            receiveReply: {
                let header = try client.readSimpleReplyHeader()
                XCTAssertEqual(header.magic, RawTLSClient.simpleReplyMagic)
                return (header.cookie, header.error, header.error == 0 ? try client.receive(Self.mebibyte) : [])
            })
        try scenario.run(watch: watch)
    }
}

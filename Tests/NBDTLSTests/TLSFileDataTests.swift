import NBDBackends
import NBDCore
import NBDServer
import NBDTestSupport
import NBDWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A TLS session encrypts every byte in the process, so reads over TLS are never sent with
/// `sendfile` (`ServerConfiguration.sendsFileDataWithoutCopying`), while a plaintext connection to
/// the same server is.
final class TLSFileDataTests: TLSServerTestCase {
    func testTLSReadsAreCopiedAndPlaintextOnesSentFromTheFile() throws {
        let contents = (0..<300_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
        var template = Array("/tmp/nbd-tls-file-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        XCTAssertGreaterThanOrEqual(fd, 0)
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { unlink(path) }
        XCTAssertEqual(contents.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }, contents.count)
        close(fd)
        let (socketPath, _) = try startServer(tls: .on, provider: try FileBackendProvider(path: path))
        let server = try XCTUnwrap(lastServer)

        for tls in [true, false] {
            let before = server.bytesSentFromFiles
            let client = try RawTLSClient(unixPath: socketPath)
            try client.startHandshake()
            if tls { try client.startTLS(try clientCertificates) }
            try client.sendOption(RawTLSClient.Option.go, RawTLSClient.infoData())
            XCTAssertEqual(try client.readOptionReplies().last?.type, RawTLSClient.Reply.ack)
            try client.sendRequest(0 /* NBD_CMD_READ */, offset: 4097, length: 200_000, cookie: 7)
            let reply = try client.readSimpleReplyHeader()
            XCTAssertEqual(reply.error, 0)
            XCTAssertEqual(reply.cookie, 7)
            XCTAssertEqual(try client.receive(200_000), Array(contents[4097..<204_097]), "tls: \(tls)")
            // The count is added after the send returned, before the next request is read: a small
            // read's reply says it is done.
            try client.sendRequest(0 /* NBD_CMD_READ */, length: 512, cookie: 8)
            XCTAssertEqual(try client.readSimpleReplyHeader().cookie, 8)
            _ = try client.receive(512)
            XCTAssertEqual(server.bytesSentFromFiles - before, tls ? 0 : 200_000, "tls: \(tls)")
        }
    }
}

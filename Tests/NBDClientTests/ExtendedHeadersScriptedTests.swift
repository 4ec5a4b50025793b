import Foundation
import NBDClient
import NBDCore
import NBDTestSupport
import XCTest

/// The client's extended headers against a scripted server, to see the bytes: the 32-byte request
/// header (with `NBD_CMD_FLAG_PAYLOAD_LEN` on a write), and a compact reply after extended headers
/// were agreed closing the connection with a message that says so.
final class ExtendedHeadersScriptedTests: ClientTestCase {
    /// An extended reply chunk.
    private static func extendedChunk(cookie: UInt64, type: UInt16, offset: UInt64, payload: [UInt8] = []) -> [UInt8] {
        ScriptedServer.be(UInt32(0x6e8a_278c)) + ScriptedServer.be(UInt16(1)) + ScriptedServer.be(type)
            + ScriptedServer.be(cookie) + ScriptedServer.be(offset) + ScriptedServer.be(UInt64(payload.count)) + payload
    }

    func testRequestsHaveTheExtendedHeaderAndAWriteCarriesPayloadLen() async throws {
        let seen = LockedBox<[ScriptedServer.ExtendedRequest]>([])
        let server = try ScriptedServer(path: try socketPath("scripted"), extendedHeadersReply: 1) { peer in
            while let request = peer.extendedRequest() {
                seen.set(seen.get() + [request])
                if request.type == 2 { return }
                peer.send(Self.extendedChunk(cookie: request.cookie, type: 0, offset: request.offset))
            }
        }
        let connection = try await NBDConnection.connect(to: .unix(server.path))
        XCTAssertTrue(connection.export.extendedHeaders)
        XCTAssertEqual(server.options, [11, 10, 7], "extended headers, no structured-reply fallback")
        try await connection.write([UInt8](repeating: 7, count: 1000), at: 4096, flags: .fua)
        try await connection.zero(count: 6 << 30, at: 0)
        await connection.disconnect()
        _ = server.finished.waitOrFail("the scripted server to finish")
        let requests = seen.get()
        XCTAssertEqual(requests.count, 3, "write, zero, disconnect")
        guard requests.count == 3 else { return }
        XCTAssertEqual(requests.map(\.magic), [0x21e4_1c71, 0x21e4_1c71, 0x21e4_1c71])
        XCTAssertEqual(requests[0].type, 1)
        XCTAssertEqual(requests[0].flags, 1 | 32, "FUA and PAYLOAD_LEN")
        XCTAssertEqual(requests[0].length, 1000)
        XCTAssertEqual(requests[0].payload, [UInt8](repeating: 7, count: 1000))
        XCTAssertEqual(requests[1].type, 6)
        XCTAssertEqual(requests[1].flags, 0, "no payload, no PAYLOAD_LEN")
        XCTAssertEqual(requests[1].length, 6 << 30, "one 64-bit write zeroes")
    }

    func testACompactReplyAfterExtendedHeadersClosesTheConnection() async throws {
        let server = try ScriptedServer(path: try socketPath("scripted"), extendedHeadersReply: 1) { peer in
            guard let request = peer.extendedRequest() else { return }
            peer.send(ScriptedServer.simpleReply(cookie: request.cookie))
            _ = peer.extendedRequest()  // until the client closes
        }
        let connection = try await NBDConnection.connect(to: .unix(server.path))
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await connection.flush() }, code: .ioError)
        XCTAssertTrue(error?.message.contains("compact simple reply") ?? false, "\(String(describing: error))")
        XCTAssertNotNil(connection.closedReason)
        await connection.disconnect()
        _ = server.finished.waitOrFail("the scripted server to finish")
    }

    func testARefusedOptionFallsBackToStructuredReplies() async throws {
        let server = try ScriptedServer(path: try socketPath("scripted")) { peer in
            guard let request = peer.request() else { return }
            peer.send(ScriptedServer.simpleReply(cookie: request.cookie))
            _ = peer.request()
        }
        let connection = try await NBDConnection.connect(to: .unix(server.path))
        XCTAssertFalse(connection.export.extendedHeaders)
        XCTAssertTrue(connection.export.structuredReplies)
        XCTAssertEqual(server.options, [11, 8, 10, 7])
        try await connection.flush()
        await connection.disconnect()
        _ = server.finished.waitOrFail("the scripted server to finish")
    }
}

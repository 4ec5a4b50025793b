import NBDCore
import NBDServer
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

/// Seeded random input in both phases: the server must answer or disconnect, never crash, and keep
/// serving new connections.
final class FuzzTests: ServerTestCase {
    typealias Client = TestNBDClient

    func testRandomOptionDataIsAnsweredOrDisconnected() throws {
        let (_, path, _) = try startServer()
        var random = SeededGenerator(seed: 42)
        let options: [UInt32] = [1, 3, 6, 7, 8, 9, 10, 11, 5, 0xFFFF_FFFF]
        for round in 0..<60 {
            let client = try Client(unixPath: path)
            try client.startHandshake()
            try client.sendOption(Client.Option.structuredReply)
            _ = try client.readOptionReply()
            let option = options[round % options.count]
            let length = Int.random(in: 0..<64, using: &random)
            var data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            if round % 3 == 0 && length >= 4 {
                // Plausible small lengths reach deeper into the parsers.
                data.replaceSubrange(0..<4, with: Array.be(UInt32(length / 2)))
            }
            if option == Client.Option.exportName {
                continue  // EXPORT_NAME with any name succeeds; covered elsewhere.
            }
            try client.sendOption(option, data)
            if let reply = try? client.readOptionReply() {
                XCTAssertEqual(reply.option, option)
            }
        }
        XCTAssertNoThrow(try Client(unixPath: path).connect())
    }

    func testRandomRequestsGetRepliesOrADisconnect() throws {
        let (_, path, _) = try startServer(capabilities: Capabilities(size: 1 << 16, canExtents: true))
        var random = SeededGenerator(seed: 7)
        for _ in 0..<40 {
            let client = try Client(unixPath: path)
            try client.connect(structured: Bool.random(using: &random), metaContext: false)
            // Valid magic, random everything else, except no write payload and small lengths so
            // that every request is complete.
            let type = UInt16.random(in: 0...12, using: &random)
            guard type != TestNBDClient.Cmd.write, type != TestNBDClient.Cmd.disconnect else { continue }
            try client.sendRequest(
                type: type, flags: UInt16.random(in: 0...0x3F, using: &random), cookie: 1,
                offset: UInt64.random(in: 0...(1 << 17), using: &random),
                length: UInt32.random(in: 0...(1 << 12), using: &random))
            try client.sendRequest(type: TestNBDClient.Cmd.flush, cookie: 2)
            // Read replies until the flush's arrives; each must be well formed.
            var done = false
            while !done {
                let reply = try client.readAnyReply(readLengths: [:])
                if case .chunk(let chunk) = reply, chunk.flags & 1 == 0 { continue }
                if case .simple(let simple, _) = reply, simple.cookie == 1, simple.error == 0,
                    type == TestNBDClient.Cmd.read
                {
                    // A successful simple read carries data we did not ask readAnyReply to consume.
                    break
                }
                done = reply.cookie == 2
            }
        }
        XCTAssertNoThrow(try Client(unixPath: path).connect())
    }

    func testRandomBytesAfterTheHandshakeDisconnectCleanly() throws {
        let (_, path, state) = try startServer()
        var random = SeededGenerator(seed: 99)
        for _ in 0..<20 {
            let client = try Client(unixPath: path)
            try client.connect()
            try client.send(
                (0..<Int.random(in: 28..<512, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
            XCTAssertTrue(client.serverClosed())
        }
        let good = try Client(unixPath: path)
        try good.connect()
        XCTAssertEqual(try good.read(4, at: 0).0, 0)
        try good.disconnect()
        XCTAssertTrue(good.serverClosed())
        XCTAssertEqual(state.closes.load(ordering: .relaxed), state.opens.load(ordering: .relaxed))
    }
}

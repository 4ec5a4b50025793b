import NBDCore
import NBDServer
import NBDWire
import Synchronization
import XCTest

final class TransmissionTests: ServerTestCase {
    typealias Client = TestNBDClient
    typealias Cmd = TestNBDClient.Cmd
    typealias Flag = TestNBDClient.Flag

    func testWriteThenReadReturnsTheData() throws {
        let (_, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect()
        let bytes = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        XCTAssertEqual(try client.write(bytes, at: 1000), 0)
        let (error, data) = try client.read(5000, at: 1000)
        XCTAssertEqual(error, 0)
        XCTAssertEqual(data, bytes)
        XCTAssertEqual(state.data.withLock { Array($0[1000..<6000]) }, bytes)
    }

    func testFUAFlushTrimZeroAndCacheSucceed() throws {
        let caps = Capabilities(size: 1 << 20, cache: .native)
        let (_, path, state) = try startServer(capabilities: caps)
        let client = try Client(unixPath: path)
        try client.connect()
        XCTAssertEqual(try client.write([9, 9, 9, 9], at: 0, flags: Flag.fua), 0)
        XCTAssertEqual(state.lastWriteFlags.withLock { $0 }, .fua)
        XCTAssertEqual(try client.command(Cmd.flush), 0)
        XCTAssertEqual(state.flushes.load(ordering: .relaxed), 1)
        XCTAssertEqual(try client.command(Cmd.trim, offset: 0, length: 4096), 0)
        XCTAssertEqual(try client.command(Cmd.writeZeroes, flags: Flag.noHole, offset: 0, length: 2), 0)
        XCTAssertEqual(try client.read(4, at: 0).1, [0, 0, 9, 9])
        XCTAssertEqual(try client.command(Cmd.cache, offset: 0, length: 4096), 0)
    }

    func testFastZeroThatCannotBeFastGetsENOTSUP() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect()
        XCTAssertEqual(try client.command(Cmd.writeZeroes, flags: Flag.fastZero, offset: 0, length: 512), 95)
    }

    func testStructuredReadIsOneOffsetDataChunk() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect(structured: true)
        XCTAssertEqual(try client.write([1, 2, 3, 4], at: 100), 0)
        try client.sendRequest(type: Cmd.read, flags: Flag.df, cookie: 77, offset: 100, length: 4)
        let chunk = try client.readChunk()
        XCTAssertEqual(chunk.cookie, 77)
        XCTAssertEqual(chunk.type, 1, "OFFSET_DATA")
        XCTAssertEqual(chunk.flags, 1, "DONE")
        XCTAssertEqual(chunk.payload.be64(0), 100)
        XCTAssertEqual(Array(chunk.payload[8...]), [1, 2, 3, 4])
    }

    func testLargeStructuredReadSendsZeroRunsAsHoleChunks() throws {
        var configuration = ServerConfiguration()
        configuration.holeDetectionThreshold = 64 << 10
        let (_, path, state) = try startServer(
            capabilities: Capabilities(size: 1 << 20, canExtents: true), configuration: configuration)
        state.data.withLock { $0[(1 << 19) - 1] = 7 }
        let client = try Client(unixPath: path)
        try client.connect(structured: true)
        // Half data, half hole (the test export's second half is a hole).
        try client.sendRequest(type: Cmd.read, cookie: 3, offset: (1 << 19) - (32 << 10), length: 64 << 10)
        let data = try client.readChunk()
        XCTAssertEqual(data.type, 1, "OFFSET_DATA")
        XCTAssertEqual(data.flags, 0, "not the last chunk")
        XCTAssertEqual(data.payload.be64(0), (1 << 19) - (32 << 10))
        XCTAssertEqual(data.payload.count, 8 + (32 << 10))
        XCTAssertEqual(data.payload.last, 7)
        let hole = try client.readChunk()
        XCTAssertEqual(hole.cookie, 3)
        XCTAssertEqual(hole.type, 2, "OFFSET_HOLE")
        XCTAssertEqual(hole.flags, 1, "DONE")
        XCTAssertEqual(hole.payload.be64(0), 1 << 19)
        XCTAssertEqual(hole.payload.be32(8), 32 << 10)
        // With DF the reply must be one chunk: all data.
        try client.sendRequest(type: Cmd.read, flags: Flag.df, cookie: 4, offset: 1 << 19, length: 64 << 10)
        let whole = try client.readChunk()
        XCTAssertEqual(whole.type, 1)
        XCTAssertEqual(whole.flags, 1)
        XCTAssertEqual(whole.payload.count, 8 + (64 << 10))
    }

    func testHoleDetectionIsOffByDefault() throws {
        let (_, path, _) = try startServer(capabilities: Capabilities(size: 1 << 20, canExtents: true))
        let client = try Client(unixPath: path)
        try client.connect(structured: true)
        try client.sendRequest(type: Cmd.read, cookie: 4, offset: 1 << 19, length: 64 << 10)
        let whole = try client.readChunk()
        XCTAssertEqual(whole.type, 1)
        XCTAssertEqual(whole.payload.count, 8 + (64 << 10))
    }

    func testStructuredReadErrorIsAnErrorChunkWithMessage() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect(structured: true)
        try client.sendRequest(type: Cmd.read, cookie: 5, offset: 1 << 20, length: 4)
        let chunk = try client.readChunk()
        XCTAssertEqual(chunk.cookie, 5)
        XCTAssertEqual(chunk.type, 0x8001, "ERROR")
        XCTAssertEqual(chunk.flags, 1)
        XCTAssertEqual(chunk.payload.be32(0), 22)
        let length = Int(chunk.payload.be16(4))
        XCTAssertEqual(chunk.payload.count, 6 + length)
        XCTAssertTrue(String(decoding: chunk.payload[6...], as: UTF8.self).contains("outside the export"))
    }

    func testStructuredErrorsOfOtherCommandsCarryTheMessageToo() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect(structured: true)
        try client.sendRequest(type: Cmd.write, cookie: 6, offset: (1 << 20) - 1, length: 2, payload: [1, 2])
        let chunk = try client.readChunk()
        XCTAssertEqual(chunk.cookie, 6)
        XCTAssertEqual(chunk.type, 0x8001)
        XCTAssertEqual(chunk.payload.be32(0), 28, "ENOSPC")
        XCTAssertTrue(String(decoding: chunk.payload[6...], as: UTF8.self).contains("write of 2 bytes"))
        // Success without data stays a simple reply.
        XCTAssertEqual(try client.command(Cmd.flush), 0)
    }

    func testBlockStatusReportsExtentsOfBaseAllocation() throws {
        let (_, path, _) = try startServer(capabilities: Capabilities(size: 1 << 20, canExtents: true))
        let client = try Client(unixPath: path)
        try client.connect(structured: true, metaContext: true)
        try client.sendRequest(type: Cmd.blockStatus, cookie: 9, offset: 0, length: 1 << 20)
        let chunk = try client.readChunk()
        XCTAssertEqual(chunk.type, 5, "BLOCK_STATUS")
        XCTAssertEqual(chunk.flags, 1)
        XCTAssertEqual(chunk.payload.count, 4 + 16)
        XCTAssertEqual(chunk.payload.be32(0), 1, "context ID of base:allocation")
        XCTAssertEqual(chunk.payload.be32(4), 1 << 19)
        XCTAssertEqual(chunk.payload.be32(8), 0, "data")
        XCTAssertEqual(chunk.payload.be32(12), 1 << 19)
        XCTAssertEqual(chunk.payload.be32(16), 3, "hole and zero")
    }

    func testBlockStatusWithRequestOneReportsOneExtentWithinTheRequest() throws {
        let (_, path, _) = try startServer(capabilities: Capabilities(size: 1 << 20, canExtents: true))
        let client = try Client(unixPath: path)
        try client.connect(structured: true, metaContext: true)
        try client.sendRequest(type: Cmd.blockStatus, flags: Flag.reqOne, cookie: 9, offset: 4096, length: 8192)
        let chunk = try client.readChunk()
        XCTAssertEqual(chunk.payload.count, 4 + 8)
        XCTAssertEqual(chunk.payload.be32(4), 8192, "clipped to the request")
        XCTAssertEqual(chunk.payload.be32(8), 0)
    }

    func testBlockStatusOverAStackWithoutExtentsReportsData() throws {
        let (_, path, _) = try startServer(capabilities: Capabilities(size: 1 << 20, canExtents: false))
        let client = try Client(unixPath: path)
        try client.connect(structured: true, metaContext: true)
        try client.sendRequest(type: Cmd.blockStatus, cookie: 9, offset: 0, length: 1 << 20)
        let chunk = try client.readChunk()
        XCTAssertEqual(chunk.payload.count, 12)
        XCTAssertEqual(chunk.payload.be32(4), 1 << 20)
        XCTAssertEqual(chunk.payload.be32(8), 0)
    }

    func testPipelinedRequestsAreAllAnswered() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect()
        var batch: [UInt8] = []
        var readLengths: [UInt64: Int] = [:]
        for index in 0..<100 {
            let offset = UInt64(index) * 4096
            batch += Client.request(
                type: Cmd.write, cookie: UInt64(2 * index), offset: offset, length: 4096,
                payload: [UInt8](repeating: UInt8(index), count: 4096))
            batch += Client.request(type: Cmd.read, cookie: UInt64(2 * index + 1), offset: offset, length: 4096)
            readLengths[UInt64(2 * index + 1)] = 4096
        }
        // Everything goes out in one send; the server reads it in big chunks and batches replies.
        try client.send(batch)
        var seen = Set<UInt64>()
        for _ in 0..<200 {
            guard case .simple(let reply, let data) = try client.readAnyReply(readLengths: readLengths) else {
                return XCTFail("structured reply without negotiation")
            }
            XCTAssertEqual(reply.error, 0)
            XCTAssertTrue(seen.insert(reply.cookie).inserted, "cookie \(reply.cookie) answered twice")
            if reply.cookie % 2 == 1 {
                XCTAssertEqual(data, [UInt8](repeating: UInt8(reply.cookie / 2), count: 4096))
            }
        }
        XCTAssertEqual(seen.count, 200)
    }

    func testLargeWriteAndReadBeyondTheReceiveBuffer() throws {
        var configuration = ServerConfiguration()
        configuration.receiveBufferSize = 64 << 10
        let (_, path, _) = try startServer(capabilities: Capabilities(size: 4 << 20), configuration: configuration)
        let client = try Client(unixPath: path)
        try client.connect()
        let bytes = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        XCTAssertEqual(try client.write(bytes, at: 4096), 0)
        XCTAssertEqual(try client.read(1 << 20, at: 4096).1, bytes)
    }

    func testDisconnectClosesTheBackendOnce() throws {
        let (_, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect()
        try client.disconnect()
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 1)
    }

    func testEndOfStreamWithoutDisconnectClosesTheBackendOnce() throws {
        let (_, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect()
        client.shutdownWriting()
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 1)
    }
}

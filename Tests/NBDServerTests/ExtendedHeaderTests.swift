import NBDCore
import NBDServer
import NBDWire
import Synchronization
import XCTest

/// Raw-byte tests of `NBD_OPT_EXTENDED_HEADERS`: negotiation and its order rules, the 32-byte
/// request and reply headers, `NBD_CMD_FLAG_PAYLOAD_LEN`, 64-bit effect lengths reaching the stack
/// in one request, `NBD_REPLY_TYPE_BLOCK_STATUS_EXT`, and the errors for each broken rule (after
/// which the server keeps serving).
final class ExtendedHeaderTests: ServerTestCase {
    typealias Client = TestNBDClient
    typealias Cmd = TestNBDClient.Cmd
    typealias Reply = TestNBDClient.Reply
    typealias Option = TestNBDClient.Option

    static let payloadLength = ProtocolConstants.commandFlagPayloadLength

    // MARK: Negotiation

    func testNegotiationAcknowledgesAndStructuredRepliesAfterwardsAreRefused() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(OptionCode.extendedHeaders, [1])
        XCTAssertEqual(try client.readOptionReply().type, OptionReply.errInvalid, "the option takes no data")
        try client.sendOption(OptionCode.extendedHeaders)
        XCTAssertEqual(try client.readOptionReply().type, Reply.ack)
        try client.sendOption(OptionCode.structuredReply)
        XCTAssertEqual(
            try client.readOptionReply().type, OptionReply.errExtendedHeaderRequired,
            "extended headers take precedence over structured replies")
        // Meta contexts need structured replies or extended headers: extended headers suffice.
        try client.sendOption(Option.setMetaContext, Client.metaContextData(queries: ["base:allocation"]))
        XCTAssertEqual(try client.readOptionReplies().map(\.type), [Reply.metaContext, Reply.ack])
        let export = try client.go()
        XCTAssertNotEqual(export.flags & TransmissionFlags.sendDF.rawValue, 0, "extended replies are structured")
        XCTAssertNotEqual(export.flags & TransmissionFlags.blockStatusPayload.rawValue, 0)
        try client.extendedDisconnect()
    }

    func testStructuredRepliesFirstThenExtendedHeaders() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(OptionCode.structuredReply)
        XCTAssertEqual(try client.readOptionReply().type, Reply.ack)
        try client.sendOption(OptionCode.extendedHeaders)
        XCTAssertEqual(try client.readOptionReply().type, Reply.ack)
        let export = try client.go()
        XCTAssertEqual(export.flags & TransmissionFlags.blockStatusPayload.rawValue, 0, "no meta context selected")
        XCTAssertEqual(try client.extendedCommand(Cmd.flush, cookie: 5).error, 0)
    }

    func testExportNameAfterExtendedHeadersDisconnects() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(OptionCode.extendedHeaders)
        XCTAssertEqual(try client.readOptionReply().type, Reply.ack)
        try client.sendOption(Option.exportName)
        XCTAssertTrue(client.serverClosed(), "EXPORT_NAME has no error reply: the server must disconnect")
        try assertServerStillServes(path)
    }

    func testTurnedOffByConfigurationIsUnsupportedAndCompactHeadersStillWork() throws {
        var configuration = ServerConfiguration()
        configuration.offersExtendedHeaders = false
        let (_, path, _) = try startServer(configuration: configuration)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(OptionCode.extendedHeaders)
        XCTAssertEqual(try client.readOptionReply().type, OptionReply.errUnsupported)
        _ = try client.go()
        XCTAssertEqual(try client.write([1, 2, 3], at: 0), 0)
        XCTAssertEqual(try client.read(3, at: 0).1, [1, 2, 3])
    }

    // MARK: Requests and replies

    func testWriteReadAndSuccessRepliesUseExtendedHeaders() throws {
        let (_, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.connectExtended()
        let written = try client.extendedCommand(
            Cmd.write, flags: Self.payloadLength, offset: 4096, length: 4, payload: [1, 2, 3, 4], cookie: 7)
        XCTAssertEqual(written.error, 0)
        XCTAssertEqual(written.chunks.map(\.type), [ChunkType.none], "a simple reply is forbidden: a NONE chunk")
        XCTAssertEqual(written.chunks.first?.offset, 4096, "the reply echoes the request's offset")
        XCTAssertEqual(written.chunks.first?.cookie, 7)
        XCTAssertEqual(state.data.withLock { Array($0[4096..<4100]) }, [1, 2, 3, 4])
        let read = try client.extendedCommand(Cmd.read, offset: 4096, length: 4, cookie: 8)
        XCTAssertEqual(read.error, 0)
        XCTAssertEqual(read.chunks.map(\.type), [ChunkType.offsetData])
        XCTAssertEqual(read.chunks.first?.payload.be64(0), 4096)
        XCTAssertEqual(read.chunks.first.map { Array($0.payload[8...]) }, [1, 2, 3, 4])
        let failed = try client.extendedCommand(Cmd.read, offset: 1 << 40, length: 4, cookie: 9)
        XCTAssertEqual(failed.error, NBDError.Code.invalidArgument.wireValue)
        XCTAssertEqual(failed.chunks.first?.type, ChunkType.error)
        XCTAssertEqual(failed.chunks.first?.offset, 1 << 40)
    }

    func testCompactHeaderAfterNegotiationDisconnectsAndServerKeepsServing() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.connectExtended()
        try client.sendRequest(type: Cmd.flush, cookie: 1)
        XCTAssertTrue(client.serverClosed(), "a compact header after extended headers is a protocol violation")
        try assertServerStillServes(path)
    }

    /// The protocol says a write MUST carry PAYLOAD_LEN; qemu 10 sends writes without it, so its
    /// length is taken as the payload length either way.
    func testWriteWithoutPayloadLengthIsServedAsQemuSendsIt() throws {
        let (_, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.connectExtended()
        let written = try client.extendedCommand(Cmd.write, offset: 0, length: 2, payload: [5, 6], cookie: 1)
        XCTAssertEqual(written.error, 0)
        XCTAssertEqual(state.data.withLock { Array($0[0..<2]) }, [5, 6])
        XCTAssertEqual(try client.extendedCommand(Cmd.flush, cookie: 2).error, 0, "the payload was read: in sync")
    }

    func testPayloadOnACommandWithoutOneIsReadThenEINVAL() throws {
        let (_, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.connectExtended()
        let refused = try client.extendedCommand(
            Cmd.trim, flags: Self.payloadLength, offset: 0, length: 3, payload: [1, 2, 3], cookie: 1)
        XCTAssertEqual(refused.error, NBDError.Code.invalidArgument.wireValue)
        let unknown = try client.extendedCommand(42, flags: Self.payloadLength, length: 2, payload: [1, 2], cookie: 2)
        XCTAssertEqual(unknown.error, NBDError.Code.invalidArgument.wireValue)
        let written = try client.extendedCommand(
            Cmd.write, flags: Self.payloadLength, offset: 8, length: 1, payload: [9], cookie: 3)
        XCTAssertEqual(written.error, 0)
        XCTAssertEqual(state.data.withLock { $0[8] }, 9)
    }

    func testWriteAbovePayloadLimitIsEINVALAndItsPayloadIsRead() throws {
        var configuration = ServerConfiguration()
        configuration.maximumPayload = 64 << 10
        let (_, path, _) = try startServer(configuration: configuration)
        let client = try Client(unixPath: path)
        try client.connectExtended()
        let refused = try client.extendedCommand(
            Cmd.write, flags: Self.payloadLength, offset: 0, length: 128 << 10,
            payload: [UInt8](repeating: 1, count: 128 << 10),
            cookie: 1)
        XCTAssertEqual(refused.error, NBDError.Code.invalidArgument.wireValue)
        XCTAssertEqual(try client.extendedCommand(Cmd.flush, cookie: 2).error, 0, "the payload was read: in sync")
    }

    func testReadAbovePayloadLimitIsEOVERFLOWAndServingGoesOn() throws {
        var configuration = ServerConfiguration()
        configuration.maximumPayload = 64 << 10
        let (_, path, _) = try startServer(configuration: configuration)
        let client = try Client(unixPath: path)
        try client.connectExtended()
        let refused = try client.extendedCommand(Cmd.read, offset: 0, length: 128 << 10, cookie: 1)
        XCTAssertEqual(refused.error, NBDError.Code.overflow.wireValue, "the protocol's error for a read too large")
        XCTAssertEqual(try client.extendedCommand(Cmd.read, offset: 0, length: 64 << 10, cookie: 2).error, 0)
    }

    // MARK: 64-bit effect lengths

    func testFiveGiBZeroTrimAndCacheReachTheBackendAsOneRequestEach() throws {
        let log = LargeRequestLog()
        let (path, _) = try startLargeServer(log: log)
        let client = try Client(unixPath: path)
        try client.connectExtended()
        let fiveGiB: UInt64 = 5 << 30
        XCTAssertEqual(
            try client.extendedCommand(Cmd.writeZeroes, offset: 1 << 30, length: fiveGiB, cookie: 1).error, 0)
        XCTAssertEqual(try client.extendedCommand(Cmd.trim, offset: 0, length: fiveGiB, cookie: 2).error, 0)
        XCTAssertEqual(try client.extendedCommand(Cmd.cache, offset: 0, length: fiveGiB, cookie: 3).error, 0)
        XCTAssertEqual(
            log.requests.withLock { $0 },
            ["zero \(fiveGiB) at \(1 << 30)", "trim \(fiveGiB) at 0", "cache \(fiveGiB) at 0"])
        let past = try client.extendedCommand(Cmd.writeZeroes, offset: 4 << 30, length: fiveGiB, cookie: 4)
        XCTAssertEqual(past.error, NBDError.Code.noSpace.wireValue, "past the end of the 8 GiB export")
    }

    func testBlockStatusReplyIsBlockStatusExtWithAnExtentAbove4GiB() throws {
        let log = LargeRequestLog()
        let (path, _) = try startLargeServer(log: log)
        let client = try Client(unixPath: path)
        try client.connectExtended(metaContext: true)
        let reply = try client.extendedCommand(Cmd.blockStatus, offset: 0, length: 8 << 30, cookie: 1)
        XCTAssertEqual(reply.error, 0)
        guard let chunk = reply.chunks.first, reply.chunks.count == 1 else { return XCTFail("one chunk expected") }
        XCTAssertEqual(chunk.type, ChunkType.blockStatusExtended)
        XCTAssertEqual(chunk.flags, ChunkType.flagDone)
        XCTAssertEqual(chunk.payload.count, 8 + 2 * 16)
        XCTAssertEqual(chunk.payload.be32(0), 1, "the base:allocation context id")
        XCTAssertEqual(chunk.payload.be32(4), 2, "the descriptor count")
        XCTAssertEqual(chunk.payload.be64(8), 6 << 30, "a 6 GiB hole in one descriptor")
        XCTAssertEqual(chunk.payload.be64(16), 3, "hole and zero")
        XCTAssertEqual(chunk.payload.be64(24), 2 << 30)
        XCTAssertEqual(chunk.payload.be64(32), 0)
        XCTAssertEqual(log.requests.withLock { $0 }, ["extents \(UInt64(8) << 30) at 0"])
    }

    func testBlockStatusPayloadFormNamesTheContextAndItsEffectLength() throws {
        let log = LargeRequestLog()
        let (path, _) = try startLargeServer(log: log)
        let client = try Client(unixPath: path)
        try client.connectExtended(metaContext: true)
        let payload = Array.be(UInt64(5 << 30)) + Array.be(UInt32(1))
        let reply = try client.extendedCommand(
            Cmd.blockStatus, flags: Self.payloadLength, offset: 0, length: UInt64(payload.count), payload: payload,
            cookie: 1)
        XCTAssertEqual(reply.error, 0)
        XCTAssertEqual(reply.chunks.first?.type, ChunkType.blockStatusExtended)
        XCTAssertEqual(reply.chunks.first?.payload.be64(8), 5 << 30, "the payload's effect length, not the header's")
        for bad in [
            Array.be(UInt64(4096)) + Array.be(UInt32(7)),
            Array.be(UInt64(4096)) + Array.be(UInt32(1)) + Array.be(UInt32(1)), [1, 2, 3],
        ] {
            let refused = try client.extendedCommand(
                Cmd.blockStatus, flags: Self.payloadLength, offset: 0, length: UInt64(bad.count), payload: bad,
                cookie: 2)
            XCTAssertEqual(refused.error, NBDError.Code.invalidArgument.wireValue, "payload \(bad)")
        }
        XCTAssertEqual(try client.extendedCommand(Cmd.flush, cookie: 3).error, 0, "every payload was read: in sync")
        XCTAssertEqual(log.requests.withLock { $0 }, ["extents \(UInt64(5) << 30) at 0"])
    }

    func testCompactClientsGetCompactBlockStatus() throws {
        let log = LargeRequestLog()
        let (path, _) = try startLargeServer(log: log)
        let client = try Client(unixPath: path)
        try client.connect(structured: true, metaContext: true)
        try client.sendRequest(type: Cmd.blockStatus, cookie: 1, offset: 0, length: UInt32.max)
        let chunk = try client.readChunk()
        XCTAssertEqual(chunk.type, ChunkType.blockStatus)
        XCTAssertEqual(chunk.payload.be32(4), UInt32.max, "capped to the request's 32-bit length")
    }

    // MARK: Helpers

    /// Checks a fresh compact client is served (after another connection broke the protocol).
    private func assertServerStillServes(_ path: String) throws {
        let other = try Client(unixPath: path)
        try other.connect()
        XCTAssertEqual(try other.write([7], at: 0), 0)
        XCTAssertEqual(try other.read(1, at: 0).1, [7])
    }

    /// An 8 GiB export without storage whose zero, trim, cache and extents calls are logged.
    private func startLargeServer(log: LargeRequestLog) throws -> (String, NBDServer) {
        let server = NBDServer(provider: LargeProvider(log: log), configuration: ServerConfiguration())
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        track(server)
        return (path, server)
    }
}

/// What reached a ``LargeBackend``.
final class LargeRequestLog: Sendable {
    let requests = Mutex<[String]>([])
}

private struct LargeProvider: BackendProvider {
    let log: LargeRequestLog
    func open(_ connection: ConnectionInfo) async throws(NBDError) -> LargeBackend { LargeBackend(log: log) }
}

/// 8 GiB: a 6 GiB hole, then data; reads return zeroes.
private struct LargeBackend: BlockBackend {
    let log: LargeRequestLog
    var capabilities: Capabilities {
        Capabilities(size: 8 << 30, cache: .native, canExtents: true)
    }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        log.requests.withLock { $0.append("zero \(count) at \(offset)") }
    }
    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        log.requests.withLock { $0.append("trim \(count) at \(offset)") }
    }
    func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        log.requests.withLock { $0.append("cache \(count) at \(offset)") }
    }
    func flush(flags: CommandFlags) async throws(NBDError) {}
    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        log.requests.withLock { $0.append("extents \(count) at \(offset)") }
        let holeEnd: UInt64 = 6 << 30
        if offset < holeEnd { return [.hole(holeEnd - offset), .data((8 << 30) - holeEnd)] }
        return [.data((8 << 30) - offset)]
    }
}

/// One reply chunk with an extended header.
struct ExtendedChunk {
    var flags: UInt16
    var type: UInt16
    var cookie: UInt64
    var offset: UInt64
    var payload: [UInt8]
}

extension TestNBDClient {
    /// Handshake with extended headers (and optionally base:allocation), then GO.
    @discardableResult
    func connectExtended(metaContext: Bool = false) throws -> Export {
        try startHandshake()
        try sendOption(OptionCode.extendedHeaders)
        guard try readOptionReply().type == Reply.ack else { throw TestClientError("extended headers refused") }
        if metaContext {
            try sendOption(Option.setMetaContext, Self.metaContextData(queries: ["base:allocation"]))
            guard try readOptionReplies().last?.type == Reply.ack else {
                throw TestClientError("base:allocation refused")
            }
        }
        return try go()
    }

    /// Sends one extended request and reads its whole reply (chunks up to `DONE`); `error` is the
    /// first error chunk's, or 0.
    func extendedCommand(
        _ type: UInt16, flags: UInt16 = 0, offset: UInt64 = 0, length: UInt64 = 0, payload: [UInt8] = [],
        cookie: UInt64
    ) throws -> (error: UInt32, chunks: [ExtendedChunk]) {
        try send(
            Array.be(ProtocolConstants.extendedRequestMagic) + Array.be(flags) + Array.be(type) + Array.be(cookie)
                + Array.be(offset) + Array.be(length) + payload)
        var chunks: [ExtendedChunk] = []
        var error: UInt32 = 0
        while true {
            let header = try receive(32)
            guard header.be32(0) == ProtocolConstants.extendedReplyMagic else {
                throw TestClientError("expected an extended reply, got magic 0x\(String(header.be32(0), radix: 16))")
            }
            let chunk = ExtendedChunk(
                flags: header.be16(4), type: header.be16(6), cookie: header.be64(8), offset: header.be64(16),
                payload: try receive(Int(header.be64(24))))
            guard chunk.cookie == cookie else {
                throw TestClientError("reply for cookie \(chunk.cookie), not \(cookie)")
            }
            if chunk.type & ChunkType.errorBit != 0 && error == 0 { error = chunk.payload.be32(0) }
            chunks.append(chunk)
            if chunk.flags & ChunkType.flagDone != 0 { return (error, chunks) }
        }
    }

    /// Sends `NBD_CMD_DISC` in the extended form.
    func extendedDisconnect() throws {
        try send(
            Array.be(ProtocolConstants.extendedRequestMagic) + Array.be(UInt16(0)) + Array.be(Cmd.disconnect)
                + Array.be(UInt64(0)) + Array.be(UInt64(0)) + Array.be(UInt64(0)))
    }
}

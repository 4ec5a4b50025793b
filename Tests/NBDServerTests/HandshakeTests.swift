import NBDCore
import NBDServer
import NBDWire
import Synchronization
import XCTest

final class HandshakeTests: ServerTestCase {
    typealias Client = TestNBDClient

    func testGreetingOffersFixedNewstyleAndNoZeroes() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        XCTAssertEqual(try client.readGreeting(), 3)
    }

    func testExportNameWithNoZeroesSendsSizeAndFlagsOnly() throws {
        let (_, path, state) = try startServer(capabilities: Capabilities(size: 4096))
        let client = try Client(unixPath: path)
        try client.startHandshake(noZeroes: true)
        try client.sendOption(Client.Option.exportName, Array("disk".utf8))
        let reply = try client.receive(10)
        XCTAssertEqual(reply.be64(0), 4096)
        XCTAssertEqual(reply.be16(8) & 1, 1, "HAS_FLAGS")
        // The next bytes are a transmission reply, not padding.
        XCTAssertEqual(try client.write([1, 2, 3], at: 0), 0)
        XCTAssertEqual(state.exportNames.withLock { $0 }, ["disk"])
    }

    func testExportNameWithoutNoZeroesPadsWith124Zeroes() throws {
        let (_, path, _) = try startServer(capabilities: Capabilities(size: 4096))
        let client = try Client(unixPath: path)
        try client.startHandshake(noZeroes: false)
        try client.sendOption(Client.Option.exportName)
        let reply = try client.receive(10 + 124)
        XCTAssertEqual(reply.be64(0), 4096)
        XCTAssertEqual(Array(reply[10...]), [UInt8](repeating: 0, count: 124))
        XCTAssertEqual(try client.read(3, at: 0).0, 0)
    }

    func testUnknownOptionGetsUnsupportedAndGoStillSucceeds() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(99, [1, 2, 3, 4, 5])
        let reply = try client.readOptionReply()
        XCTAssertEqual(reply.option, 99)
        XCTAssertEqual(reply.type, Client.Reply.errUnsupported)
        let export = try client.go()
        XCTAssertEqual(export.size, 1 << 20)
    }

    func testListReturnsTheDefaultExportWithDescription() throws {
        var configuration = ServerConfiguration()
        configuration.exportDescription = "test disk"
        let (_, path, _) = try startServer(configuration: configuration)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.list)
        let replies = try client.readOptionReplies()
        XCTAssertEqual(replies.map(\.type), [Client.Reply.server, Client.Reply.ack])
        XCTAssertEqual(replies[0].data.be32(0), 0, "the default export's name is empty")
        XCTAssertEqual(String(decoding: replies[0].data[4...], as: UTF8.self), "test disk")
    }

    func testListWithDataIsInvalid() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.list, [0])
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.errInvalid)
        XCTAssertNoThrow(try client.go())
    }

    func testInfoReportsExportNameDescriptionAndBlockSizeThenClosesTheBackend() throws {
        var configuration = ServerConfiguration()
        configuration.exportDescription = "described"
        let caps = Capabilities(
            size: 1 << 20, blockSize: BlockSizeConstraints(minimum: 512, preferred: 4096, maximumPayload: 64 << 20))
        let (_, path, state) = try startServer(capabilities: caps, configuration: configuration)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.info, Client.infoData(name: "name", requests: [1, 2, 3]))
        let replies = try client.readOptionReplies()
        XCTAssertEqual(replies.last?.type, Client.Reply.ack)
        let infos = Dictionary(
            replies.filter { $0.type == Client.Reply.info }.map { ($0.data.be16(0), Array($0.data[2...])) },
            uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(infos[0]?.be64(0), 1 << 20)
        XCTAssertEqual(infos[1].map { String(decoding: $0, as: UTF8.self) }, "name")
        XCTAssertEqual(infos[2].map { String(decoding: $0, as: UTF8.self) }, "described")
        let blockSize = try XCTUnwrap(infos[3])
        XCTAssertEqual(blockSize.be32(0), 512)
        XCTAssertEqual(blockSize.be32(4), 4096)
        XCTAssertEqual(blockSize.be32(8), 32 << 20, "the server's 32 MiB limit is smaller than the backend's")
        // INFO opened the stack and closed it again; haggling continues.
        _ = try client.go()
        XCTAssertEqual(state.opens.load(ordering: .relaxed), 2)
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 1)
    }

    func testNonDefaultBlockSizesAreAdvertisedEvenUnasked() throws {
        let caps = Capabilities(size: 1 << 20, blockSize: BlockSizeConstraints(minimum: 4096, preferred: 4096))
        let (_, path, _) = try startServer(capabilities: caps)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        let export = try client.go(requests: [])
        let blockSize = try XCTUnwrap(export.infos.first { $0.type == Client.Reply.info && $0.data.be16(0) == 3 })
        XCTAssertEqual(blockSize.data.be32(2), 4096)
    }

    func testDefaultBlockSizesAreSentOnlyWhenAsked() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        let export = try client.go(requests: [])
        XCTAssertNil(export.infos.first { $0.type == Client.Reply.info && $0.data.be16(0) == 3 })
    }

    func testFailedOpenRepliesWithErrorAndHagglingContinues() throws {
        let (_, path, state) = try startServer()
        state.failingOpens.store(1, ordering: .relaxed)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.go, Client.infoData(name: "", requests: []))
        let reply = try client.readOptionReply()
        XCTAssertEqual(reply.type, Client.Reply.errUnknown)
        XCTAssertTrue(String(decoding: reply.data, as: UTF8.self).contains("refuses"))
        XCTAssertNoThrow(try client.go())
    }

    func testFailedOpenAtExportNameDisconnects() throws {
        let (_, path, state) = try startServer()
        state.failingOpens.store(1, ordering: .relaxed)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.exportName, Array("x".utf8))
        XCTAssertTrue(client.serverClosed(), "EXPORT_NAME has no error reply: the server must disconnect")
        XCTAssertNoThrow(try Client(unixPath: path).connect())
    }

    func testAbortIsAcknowledgedAndTheConnectionCloses() throws {
        let (_, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.abort)
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.ack)
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.opens.load(ordering: .relaxed), 0)
    }

    func testUnknownClientFlagsDisconnect() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        _ = try client.readGreeting()
        try client.sendClientFlags(0x80)
        XCTAssertTrue(client.serverClosed())
    }

    func testBadOptionMagicDisconnects() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.send(Array.be(UInt64(0x1234)) + Array.be(UInt32(7)) + Array.be(UInt32(0)))
        XCTAssertTrue(client.serverClosed())
    }

    func testOverlongOptionDisconnects() throws {
        var configuration = ServerConfiguration()
        configuration.maximumOptionLength = 1024
        let (_, path, _) = try startServer(configuration: configuration)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.send(Array.be(Client.optionMagic) + Array.be(UInt32(99)) + Array.be(UInt32(1 << 30)))
        XCTAssertTrue(client.serverClosed())
    }

    func testAClientSilentDuringTheHandshakeIsDroppedAfterTheTimeout() throws {
        var configuration = ServerConfiguration()
        configuration.handshakeTimeout = .milliseconds(50)
        let (_, path, _) = try startServer(configuration: configuration)
        let silent = try Client(unixPath: path)
        _ = try silent.readGreeting()
        XCTAssertTrue(silent.serverClosed())
        // Other connections are unaffected.
        let client = try Client(unixPath: path)
        try client.connect()
        XCTAssertEqual(try client.read(4, at: 0).0, 0)
    }

    func testMalformedGoIsInvalidAndHagglingContinues() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        // The name length claims more bytes than the option carries.
        try client.sendOption(Client.Option.go, Array.be(UInt32(100)) + [0, 0])
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.errInvalid)
        XCTAssertNoThrow(try client.go())
    }

    func testMetaContextsNeedStructuredReplies() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.setMetaContext, Client.metaContextData(queries: ["base:allocation"]))
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.errInvalid)
    }

    func testWithoutStructuredRepliesTheOptionIsUnsupportedAndMetaContextsRefused() throws {
        var configuration = ServerConfiguration()
        configuration.offersStructuredReplies = false
        let (_, path, _) = try startServer(configuration: configuration)
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.structuredReply)
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.errUnsupported)
        try client.sendOption(Client.Option.setMetaContext, Client.metaContextData(queries: ["base:allocation"]))
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.errInvalid)
        // Simple replies still serve the export.
        let export = try client.go()
        XCTAssertEqual(export.size, 1 << 20)
        XCTAssertEqual(try client.read(8, at: 0).0, 0)
    }

    func testListMetaContextOffersBaseAllocation() throws {
        let (_, path, _) = try startServer()
        let client = try Client(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Client.Option.structuredReply)
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.ack)
        try client.sendOption(Client.Option.listMetaContext, Client.metaContextData(queries: []))
        let replies = try client.readOptionReplies()
        XCTAssertEqual(replies.map(\.type), [Client.Reply.metaContext, Client.Reply.ack])
        XCTAssertEqual(String(decoding: replies[0].data[4...], as: UTF8.self), "base:allocation")
        try client.sendOption(Client.Option.setMetaContext, Client.metaContextData(queries: ["qemu:dirty-bitmap:x"]))
        XCTAssertEqual(
            try client.readOptionReplies().map(\.type), [Client.Reply.ack], "unknown contexts are not selected")
    }

    func testTransmissionFlagsFollowTheCapabilities() throws {
        let caps = Capabilities(
            size: 1 << 20, canFlush: true, fua: .emulated, canTrim: false, canZero: true, canFastZero: false,
            cache: .native, canMultiConn: true, isRotational: true)
        let (_, path, _) = try startServer(capabilities: caps)
        let plain = try Client(unixPath: path).connect()
        // HAS_FLAGS, SEND_FLUSH, SEND_FUA, ROTATIONAL, SEND_WRITE_ZEROES, CAN_MULTI_CONN, SEND_CACHE.
        XCTAssertEqual(plain.flags, 1 | 4 | 8 | 16 | 64 | 256 | 1024)
        let structured = try Client(unixPath: path).connect(structured: true)
        XCTAssertEqual(structured.flags, plain.flags | 128, "SEND_DF only with structured replies")
    }

    func testReadOnlyServerAdvertisesReadOnlyWithoutWriteFeatures() throws {
        var configuration = ServerConfiguration()
        configuration.isReadOnly = true
        let (_, path, _) = try startServer(configuration: configuration)
        let export = try Client(unixPath: path).connect()
        XCTAssertEqual(export.flags & 2, 2, "READ_ONLY")
        XCTAssertEqual(export.flags & (8 | 32 | 64 | 2048), 0, "no FUA, TRIM, WRITE_ZEROES or FAST_ZERO")
    }

    func testMultiConnIsNotAdvertisedWhenOnlyOneConnectionIsAccepted() throws {
        var configuration = ServerConfiguration()
        configuration.maximumConnections = 1
        let (_, path, _) = try startServer(
            capabilities: Capabilities(size: 4096, canMultiConn: true), configuration: configuration)
        let export = try Client(unixPath: path).connect()
        XCTAssertEqual(export.flags & 256, 0)
    }

    func testTCPPortZeroReportsTheBoundPort() async throws {
        let state = TestExportState(size: 4096)
        let server = NBDServer(provider: TestProvider(state: state, capabilities: Capabilities(size: 4096)))
        let address = try server.listen(on: .tcp(host: "127.0.0.1", port: 0))
        guard case .tcp(_, let port) = address else { return XCTFail("not TCP") }
        XCTAssertNotEqual(port, 0)
        XCTAssertEqual(server.addresses, [address])
        XCTAssertEqual(address.uri, "nbd://127.0.0.1:\(port)")
        let client = try TestNBDClient(tcpPort: port)
        XCTAssertEqual(try client.connect().size, 4096)
        await server.shutdown()
    }
}

import NBDCore
import NBDServer
import NBDWire
import Synchronization
import XCTest

/// Every malformed or invalid request gets the error the NBD protocol prescribes, and none of them
/// crashes the server or disturbs another connection.
final class BadInputTests: ServerTestCase {
    typealias Client = TestNBDClient
    typealias Cmd = TestNBDClient.Cmd
    typealias Flag = TestNBDClient.Flag

    static let EPERM: UInt32 = 1
    static let EINVAL: UInt32 = 22
    static let ENOSPC: UInt32 = 28

    private func connectedClient(
        capabilities: Capabilities = Capabilities(size: 1 << 20),
        configuration: ServerConfiguration = ServerConfiguration()
    ) throws -> Client {
        let (_, path, _) = try startServer(capabilities: capabilities, configuration: configuration)
        let client = try Client(unixPath: path)
        try client.connect()
        return client
    }

    /// The connection still serves a normal request afterwards.
    private func assertStillWorks(_ client: Client, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try client.read(16, at: 0).0, 0, "the connection no longer works", file: file, line: line)
    }

    func testReadPastTheEndIsEINVAL() throws {
        let client = try connectedClient()
        XCTAssertEqual(try client.read(4096, at: (1 << 20) - 100).0, Self.EINVAL)
        try assertStillWorks(client)
    }

    func testOffsetOverflowIsEINVAL() throws {
        let client = try connectedClient()
        XCTAssertEqual(try client.read(4096, at: UInt64.max - 10).0, Self.EINVAL)
        try assertStillWorks(client)
    }

    func testWritePastTheEndIsENOSPC() throws {
        let client = try connectedClient()
        XCTAssertEqual(try client.write([UInt8](repeating: 1, count: 200), at: (1 << 20) - 100), Self.ENOSPC)
        try assertStillWorks(client)
    }

    func testZeroLengthReadIsEINVAL() throws {
        let client = try connectedClient()
        XCTAssertEqual(try client.read(0, at: 0).0, Self.EINVAL)
        try assertStillWorks(client)
    }

    func testWriteOnAReadOnlyExportIsEPERM() throws {
        var configuration = ServerConfiguration()
        configuration.isReadOnly = true
        let client = try connectedClient(configuration: configuration)
        XCTAssertEqual(try client.write([1, 2, 3], at: 0), Self.EPERM)
        XCTAssertEqual(try client.command(Cmd.trim, offset: 0, length: 512), Self.EPERM)
        try assertStillWorks(client)
    }

    func testMisalignedRequestIsEINVAL() throws {
        let caps = Capabilities(size: 1 << 20, blockSize: BlockSizeConstraints(minimum: 512, preferred: 4096))
        let client = try connectedClient(capabilities: caps)
        XCTAssertEqual(try client.read(512, at: 100).0, Self.EINVAL)
        XCTAssertEqual(try client.write([UInt8](repeating: 0, count: 100), at: 0), Self.EINVAL)
        XCTAssertEqual(try client.read(512, at: 512).0, 0)
    }

    func testUnknownCommandIsEINVAL() throws {
        let client = try connectedClient()
        XCTAssertEqual(try client.command(42, offset: 0, length: 512), Self.EINVAL)
        try assertStillWorks(client)
    }

    func testUnknownFlagIsEINVAL() throws {
        let client = try connectedClient()
        XCTAssertEqual(try client.read(16, at: 0, flags: 1 << 9).0, Self.EINVAL)
        try assertStillWorks(client)
    }

    func testFlagOnTheWrongCommandIsEINVAL() throws {
        let client = try connectedClient()
        XCTAssertEqual(try client.read(16, at: 0, flags: Flag.noHole).0, Self.EINVAL)
        XCTAssertEqual(try client.read(16, at: 0, flags: Flag.df).0, Self.EINVAL, "DF needs structured replies")
        try assertStillWorks(client)
    }

    func testFlushWithANonzeroOffsetIsEINVAL() throws {
        let client = try connectedClient()
        XCTAssertEqual(try client.command(Cmd.flush, offset: 512, length: 0), Self.EINVAL)
        XCTAssertEqual(try client.command(Cmd.flush, offset: 0, length: 0), 0)
    }

    func testUnadvertisedCommandsAreEINVAL() throws {
        let caps = Capabilities(size: 1 << 20, canFlush: false, fua: .none, canTrim: false, cache: .none)
        let client = try connectedClient(capabilities: caps)
        XCTAssertEqual(try client.command(Cmd.flush), Self.EINVAL)
        XCTAssertEqual(try client.command(Cmd.trim, offset: 0, length: 512), Self.EINVAL)
        XCTAssertEqual(try client.command(Cmd.cache, offset: 0, length: 512), Self.EINVAL)
        XCTAssertEqual(try client.write([1], at: 0, flags: Flag.fua), Self.EINVAL)
        try assertStillWorks(client)
    }

    func testBlockStatusWithoutAMetaContextIsEINVAL() throws {
        let (_, path, _) = try startServer(capabilities: Capabilities(size: 1 << 20, canExtents: true))
        let client = try Client(unixPath: path)
        try client.connect(structured: true, metaContext: false)
        // Block status replies are structured, errors included.
        try client.sendRequest(type: Cmd.blockStatus, cookie: 2, offset: 0, length: 4096)
        let error = try client.readChunk()
        XCTAssertEqual(error.type, 0x8001)
        XCTAssertEqual(error.payload.be32(0), Self.EINVAL)
        try client.sendRequest(type: Cmd.read, cookie: 1, offset: 0, length: 4)
        XCTAssertEqual(try client.readChunk().type, 1)
    }

    func testOversizedWritePayloadIsDiscardedAndRefusedWithEINVAL() throws {
        var configuration = ServerConfiguration()
        configuration.maximumPayload = 64 << 10
        let client = try connectedClient(capabilities: Capabilities(size: 4 << 20), configuration: configuration)
        let payload = [UInt8](repeating: 0xAB, count: 1 << 20)
        XCTAssertEqual(try client.write(payload, at: 0), Self.EINVAL)
        // The payload was read and dropped: the next request is parsed correctly.
        let (error, data) = try client.read(16, at: 0)
        XCTAssertEqual(error, 0)
        XCTAssertEqual(data, [UInt8](repeating: 0, count: 16))
    }

    func testOversizedReadIsEINVAL() throws {
        var configuration = ServerConfiguration()
        configuration.maximumPayload = 64 << 10
        let client = try connectedClient(capabilities: Capabilities(size: 4 << 20), configuration: configuration)
        XCTAssertEqual(try client.read(1 << 20, at: 0).0, Self.EINVAL)
        try assertStillWorks(client)
    }

    func testAbsurdWritePayloadDisconnects() throws {
        let client = try connectedClient()
        try client.sendRequest(type: Cmd.write, cookie: 1, offset: 0, length: UInt32.max)
        XCTAssertTrue(client.serverClosed())
    }

    func testWrongRequestMagicDisconnectsWhileAnotherConnectionKeepsWorking() throws {
        let (_, path, _) = try startServer()
        let good = try Client(unixPath: path)
        try good.connect()
        let bad = try Client(unixPath: path)
        try bad.connect()
        try bad.sendRequest(type: Cmd.read, cookie: 1, offset: 0, length: 16, magic: 0xdead_beef)
        XCTAssertTrue(bad.serverClosed())
        XCTAssertEqual(try good.write([1, 2, 3], at: 0), 0)
        XCTAssertEqual(try good.read(3, at: 0).1, [1, 2, 3])
    }

    func testGarbageInsteadOfAHandshakeDoesNotDisturbOthers() throws {
        let (_, path, _) = try startServer()
        let good = try Client(unixPath: path)
        try good.connect()
        let garbage = try Client(unixPath: path)
        _ = try garbage.readGreeting()
        try garbage.send([UInt8](repeating: 0xFF, count: 4096))
        XCTAssertTrue(garbage.serverClosed())
        try assertStillWorks(good)
    }

    func testTruncatedRequestClosesTheConnectionCleanly() throws {
        let (_, path, state) = try startServer()
        let client = try Client(unixPath: path)
        try client.connect()
        // Half a header, then end of stream.
        try client.send(Array(Client.request(type: Cmd.read, cookie: 1, length: 16).prefix(10)))
        client.shutdownWriting()
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(state.closes.load(ordering: .relaxed), 1)
    }
}

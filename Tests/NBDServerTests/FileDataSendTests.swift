import NBDBackends
import NBDCore
import NBDServer
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Reads of file-backed exports sent with `sendfile` (`ServerConfiguration.sendsFileDataWithoutCopying`):
/// the bytes a client gets are the file's, whatever the framing, and only where the stack says
/// where they are.
final class FileDataSendTests: ServerTestCase {
    private typealias Client = TestNBDClient
    private typealias Cmd = TestNBDClient.Cmd
    private var filePath: String?
    /// The file's bytes: a pattern no shifted read matches by accident.
    private var contents: [UInt8] = []

    /// Made once: a multiplicative hash of each offset, which no shifted read matches.
    private static let pattern = (0..<((2 << 20) + 12345)).map {
        UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13)
    }

    override func setUp() async throws {
        contents = Self.pattern
        var template = Array("/tmp/nbd-file-data-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        XCTAssertGreaterThanOrEqual(fd, 0)
        filePath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let written = contents.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        XCTAssertEqual(written, contents.count)
        close(fd)
    }

    override func tearDown() async throws {
        try await super.tearDown()
        if let filePath { unlink(filePath) }
    }

    /// A server over the file, optionally behind a pass-through filter that does not opt in.
    private func startFileServer(
        configuration: ServerConfiguration = ServerConfiguration(), filtered: Bool = false
    ) throws -> (NBDServer, String) {
        let provider = try FileBackendProvider(path: filePath!)
        let server: NBDServer
        if filtered {
            server = NBDServer(
                provider: provider.wrapped { next, _ in PassThroughFilter(next: next) }, configuration: configuration)
        } else {
            server = NBDServer(provider: provider, configuration: configuration)
        }
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        track(server)
        return (server, path)
    }

    /// A small read's round trip. The connection counts a reply's sendfile bytes after the send
    /// returned, which may be after the client has the data, and before it reads the next request:
    /// once this reply is in, every earlier reply is counted.
    private func settle(_ client: Client, framing: ReplyFraming = .simple) throws {
        switch framing {
        case .simple:
            XCTAssertEqual(try client.read(512, at: 0).0, 0)
        case .structured:
            try client.sendRequest(type: Cmd.read, cookie: 99, length: 512)
            XCTAssertEqual(try client.readChunk().cookie, 99)
        case .extended:
            XCTAssertEqual(try client.extendedCommand(Cmd.read, length: 512, cookie: 99).error, 0)
        }
    }

    private func expected(_ length: Int, at offset: Int) -> [UInt8] {
        Array(contents[offset..<(offset + length)])
    }

    func testSimpleRepliesAtUnalignedOffsetsComeFromTheFile() throws {
        let (server, path) = try startFileServer()
        let client = try Client(unixPath: path)
        try client.connect()
        for (offset, length) in [(4097, 200_003), (0, 1 << 20), (1_000_001, 65536), ((2 << 20) - 70000, 82345)] {
            let before = server.bytesSentFromFiles
            let (error, data) = try client.read(UInt32(length), at: UInt64(offset))
            XCTAssertEqual(error, 0)
            XCTAssertEqual(data, expected(length, at: offset), "read of \(length) at \(offset)")
            try settle(client)
            XCTAssertEqual(server.bytesSentFromFiles - before, length, "sent with sendfile")
        }
        try client.disconnect()
    }

    func testStructuredReplyIsOneOffsetDataChunk() throws {
        let (server, path) = try startFileServer()
        let client = try Client(unixPath: path)
        try client.connect(structured: true)
        try client.sendRequest(type: Cmd.read, cookie: 5, offset: 12_345, length: 300_001)
        let chunk = try client.readChunk()
        XCTAssertEqual(chunk.type, ChunkType.offsetData)
        XCTAssertEqual(chunk.flags & ChunkType.flagDone, ChunkType.flagDone)
        XCTAssertEqual(chunk.cookie, 5)
        XCTAssertEqual(chunk.payload.be64(0), 12_345)
        XCTAssertEqual(Array(chunk.payload[8...]), expected(300_001, at: 12_345))
        try settle(client, framing: .structured)
        XCTAssertEqual(server.bytesSentFromFiles, 300_001)
        try client.disconnect()
    }

    func testExtendedHeaderReplyCarriesTheData() throws {
        let (server, path) = try startFileServer()
        let client = try Client(unixPath: path)
        try client.connectExtended()
        let read = try client.extendedCommand(Cmd.read, offset: 77_777, length: 1_234_567, cookie: 9)
        XCTAssertEqual(read.error, 0)
        XCTAssertEqual(read.chunks.map(\.type), [ChunkType.offsetData])
        XCTAssertEqual(read.chunks.first?.offset, 77_777)
        XCTAssertEqual(read.chunks.first?.payload.be64(0), 77_777)
        XCTAssertEqual(read.chunks.first.map { Array($0.payload[8...]) }, expected(1_234_567, at: 77_777))
        try settle(client, framing: .extended)
        XCTAssertEqual(server.bytesSentFromFiles, 1_234_567)
        try client.extendedDisconnect()
    }

    /// Small replies batched before and after a file reply, pipelined, keep their order and bytes.
    func testPipelinedSmallAndLargeReadsKeepTheirBytes() throws {
        let (server, path) = try startFileServer()
        let client = try Client(unixPath: path)
        try client.connect()
        let reads: [(cookie: UInt64, offset: Int, length: Int)] = [
            (1, 3, 4096), (2, 5000, 70_001), (3, 9, 512), (4, 100_000, 1 << 20), (5, 1, 100),
        ]
        try client.send(
            reads.flatMap {
                Client.request(type: Cmd.read, cookie: $0.cookie, offset: UInt64($0.offset), length: UInt32($0.length))
            })
        let lengths = Dictionary(uniqueKeysWithValues: reads.map { ($0.cookie, $0.length) })
        var seen: Set<UInt64> = []
        for _ in reads {
            guard case .simple(let reply, let data) = try client.readAnyReply(readLengths: lengths) else {
                return XCTFail("expected simple replies")
            }
            let read = reads.first { $0.cookie == reply.cookie }!
            XCTAssertEqual(reply.error, 0)
            XCTAssertEqual(data, expected(read.length, at: read.offset), "cookie \(reply.cookie)")
            seen.insert(reply.cookie)
        }
        XCTAssertEqual(seen.count, reads.count)
        try settle(client)
        XCTAssertEqual(server.bytesSentFromFiles, 70_001 + (1 << 20), "only the reads of 64 KiB and more")
        try client.disconnect()
    }

    /// Two connections reading at once from their own threads each get their own bytes.
    func testConcurrentConnectionsGetTheirOwnBytes() throws {
        let (server, path) = try startFileServer()
        let contents = self.contents
        let threads = (0..<2).map { index in
            ThreadResult<String?> {
                do {
                    let client = try Client(unixPath: path)
                    try client.connect(structured: index == 1)
                    for round in 0..<20 {
                        let offset = (round * 65_537 + index * 4099) % (1 << 20)
                        let length = 65_536 + round * 1000
                        let data: [UInt8]
                        if index == 1 {
                            try client.sendRequest(
                                type: Cmd.read, cookie: UInt64(round), offset: UInt64(offset), length: UInt32(length))
                            data = Array(try client.readChunk().payload[8...])
                        } else {
                            data = try client.read(UInt32(length), at: UInt64(offset)).1
                        }
                        guard data == Array(contents[offset..<(offset + length)]) else {
                            return "connection \(index) round \(round): wrong bytes"
                        }
                    }
                    try client.disconnect()
                    return nil
                } catch {
                    return "\(error)"
                }
            }
        }
        for (index, thread) in threads.enumerated() {
            if let result = thread.value("connection \(index)'s reads"), let failure = result { XCTFail(failure) }
        }
        XCTAssertGreaterThan(server.bytesSentFromFiles, 0)
    }

    func testFilterThatDoesNotOptInIsNotBypassed() throws {
        let (server, path) = try startFileServer(filtered: true)
        try assertReadIsCopied(200_000, at: 4097, from: server, at: path)
    }

    func testSwitchedOffCopiesEveryRead() throws {
        var configuration = ServerConfiguration()
        configuration.sendsFileDataWithoutCopying = false
        let (server, path) = try startFileServer(configuration: configuration)
        try assertReadIsCopied(200_000, at: 4097, from: server, at: path)
    }

    func testReadsBelow64KiBAreCopied() throws {
        let (server, path) = try startFileServer()
        try assertReadIsCopied(65_535, at: 1, from: server, at: path)
    }

    /// Reads `count` bytes at `offset` over a new connection and checks they are right and that none
    /// of them left with sendfile.
    private func assertReadIsCopied(
        _ count: Int, at offset: Int, from server: NBDServer, at path: String, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let client = try Client(unixPath: path)
        try client.connect()
        let (error, data) = try client.read(UInt32(count), at: UInt64(offset))
        XCTAssertEqual(error, 0, file: file, line: line)
        XCTAssertEqual(data, expected(count, at: offset), file: file, line: line)
        try settle(client)
        XCTAssertEqual(server.bytesSentFromFiles, 0, file: file, line: line)
        try client.disconnect()
    }

    /// A sendfile that stops part-way (made to here) leaves the rest to pread and a copy.
    func testSendfileStoppingShortFallsBackToCopying() throws {
        for limit in [0, 1000] {
            var configuration = ServerConfiguration()
            configuration.sendFileLimit = limit
            let (server, path) = try startFileServer(configuration: configuration)
            let client = try Client(unixPath: path)
            try client.connect(structured: true)
            for (cookie, offset) in [(UInt64(1), 3), (2, 500_000)] {
                try client.sendRequest(type: Cmd.read, cookie: cookie, offset: UInt64(offset), length: 300_000)
                let chunk = try client.readChunk()
                XCTAssertEqual(chunk.type, ChunkType.offsetData)
                XCTAssertEqual(Array(chunk.payload[8...]), expected(300_000, at: offset), "limit \(limit)")
            }
            try settle(client, framing: .structured)
            XCTAssertEqual(server.bytesSentFromFiles, 2 * limit)
            try client.disconnect()
        }
    }

    /// A file region whose data can be neither sent nor read: the header already promised the data,
    /// so the connection is closed, with a warning that says why.
    func testUnreadableRegionDisconnectsWithAWarning() throws {
        var template = Array("/tmp/nbd-unreadable-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        XCTAssertGreaterThanOrEqual(made, 0)
        close(made)
        let writeOnly = template.withUnsafeBufferPointer { open($0.baseAddress!, O_WRONLY) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        defer { close(writeOnly) }
        let events = LockedValue<[ServerEvent]>([])
        var configuration = ServerConfiguration()
        configuration.eventHandler = { event in events.withLock { $0.append(event) } }
        let state = TestExportState(size: 1 << 20)
        let provider = TestProvider(state: state, capabilities: Capabilities(size: 1 << 20)).wrapped { next, _ in
            RegionFilter(next: next, descriptor: writeOnly)
        }
        let server = NBDServer(provider: provider, configuration: configuration)
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        track(server)
        let client = try Client(unixPath: path)
        try client.connect()
        try client.sendRequest(type: Cmd.read, cookie: 4, length: 100_000)
        let reply = try client.readSimpleReply()
        XCTAssertEqual(reply.error, 0, "the header went out before the data failed")
        XCTAssertTrue(client.serverClosed())
        let warning = events.withLock { $0.first { $0.kind == .requestFailed && $0.message.contains("disconnecting") } }
        XCTAssertNotNil(warning)
        XCTAssertEqual(warning?.level, .error)
    }
}

/// A filter that implements nothing: it passes reads through but, like every filter that does not
/// opt in, reports no file region.
private struct PassThroughFilter<Next: BlockBackend>: Filter {
    let next: Next
}

/// A filter that says its bytes lie in `descriptor`, at the same offsets.
private struct RegionFilter<Next: BlockBackend>: Filter {
    let next: Next
    let descriptor: Int32

    func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? {
        FileRegion(descriptor: descriptor, offset: offset)
    }
}

import Dispatch
import NBDCore
import NBDTestSupport
import NBDServer
import NBDWire
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Clients that vanish, stall or overstep the limits: the server must not crash, must close every
/// backend it opened exactly once, and must keep serving everybody else. Every wait is for an event
/// (a gate arrival, a backend close, a log line, end of stream); the clients' receive timeouts are
/// only safety nets.
final class HostileClientTests: ServerTestCase {
    typealias Client = TestNBDClient
    typealias Cmd = TestNBDClient.Cmd
    typealias Flag = TestNBDClient.Flag

    private var extraServers: [NBDServer] = []

    override func tearDown() async throws {
        for server in extraServers { await server.shutdown() }
        extraServers = []
        try await super.tearDown()
    }

    /// Where a test server listens.
    enum Endpoint {
        case unix(String)
        case tcp(UInt16)

        func client() throws -> Client {
            switch self {
            case .unix(let path): try Client(unixPath: path)
            case .tcp(let port): try Client(tcpPort: port)
            }
        }
    }

    private func startCountingServer(
        capabilities: Capabilities = Capabilities(size: 4 << 20),
        configuration: ServerConfiguration = ServerConfiguration(),
        tcp: Bool = false, readGate: Gate? = nil, writeGate: Gate? = nil
    ) throws -> (server: NBDServer, endpoint: Endpoint, export: CountingExport) {
        let export = CountingExport(readGate: readGate, writeGate: writeGate)
        let server = NBDServer(
            provider: CountingProvider(export: export, capabilities: capabilities), configuration: configuration)
        extraServers.append(server)
        if tcp {
            guard case .tcp(_, let port) = try server.listen(on: .tcp(host: "127.0.0.1", port: 0)) else {
                throw TestClientError("not a TCP address")
            }
            return (server, .tcp(port), export)
        }
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        return (server, .unix(path), export)
    }

    /// A new client is served normally.
    private func assertServes(_ endpoint: Endpoint, file: StaticString = #filePath, line: UInt = #line) throws {
        let client = try endpoint.client()
        try client.connect()
        XCTAssertEqual(try client.read(512, at: 0).0, 0, "a new client is not served", file: file, line: line)
        try client.disconnect()
        XCTAssertTrue(client.serverClosed(), file: file, line: line)
    }

    /// Stops the server (which waits for every connection to end) and checks that every backend
    /// opened was closed exactly once.
    private func assertEveryBackendClosedOnce(
        _ server: NBDServer, _ export: CountingExport, opens: Int, file: StaticString = #filePath, line: UInt = #line
    ) async {
        await server.shutdown()
        XCTAssertEqual(export.opens.load(ordering: .relaxed), opens, "backends opened", file: file, line: line)
        XCTAssertEqual(export.closes.load(ordering: .relaxed), opens, "backends closed", file: file, line: line)
        XCTAssertFalse(
            export.closedTwice.load(ordering: .relaxed), "a backend was closed twice", file: file, line: line)
        XCTAssertFalse(
            export.closedWithRequestsInFlight.load(ordering: .relaxed), "a backend was closed under a request",
            file: file, line: line)
    }

    /// Sets SO_LINGER to zero so that closing the socket sends a TCP RST instead of a FIN.
    private func armReset(_ client: Client) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(client.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    }

    // MARK: Vanishing with requests in flight

    private func vanishWithReadsInFlight(tcp: Bool, reset: Bool) async throws {
        let gate = Gate()
        defer { gate.open() }  // A failing test must not leave shutdown waiting for a gated read.
        let (server, endpoint, export) = try startCountingServer(tcp: tcp, readGate: gate)
        do {
            let client = try endpoint.client()
            try client.connect()
            var batch: [UInt8] = []
            for cookie in 0..<32 {
                batch += Client.request(type: Cmd.read, cookie: UInt64(cookie), offset: 0, length: 64 << 10)
            }
            try client.send(batch)
            // The first read is inside the backend, the others are queued behind it.
            withExtendedLifetime(client) { gate.waitForArrival() }
            if reset { armReset(client) }
        }  // The client closes here, with 32 reads unanswered.
        gate.open()
        export.waitForClose()
        try assertServes(endpoint)
        await assertEveryBackendClosedOnce(server, export, opens: 2)
    }

    func testAClientClosingWithReadsInFlightLeavesTheServerServing() async throws {
        try await vanishWithReadsInFlight(tcp: false, reset: false)
    }

    func testAClientResettingATCPConnectionWithReadsInFlightLeavesTheServerServing() async throws {
        try await vanishWithReadsInFlight(tcp: true, reset: true)
    }

    func testAClientResettingWithSlowWritesInFlightIsClosedOnlyAfterTheyFinish() async throws {
        let gate = Gate()
        defer { gate.open() }
        let (server, endpoint, export) = try startCountingServer(
            capabilities: Capabilities(size: 4 << 20, slowOperations: [.fuaRequests]), tcp: true, writeGate: gate)
        do {
            let client = try endpoint.client()
            try client.connect()
            var batch: [UInt8] = []
            for cookie in 0..<8 {
                batch += Client.request(
                    type: Cmd.write, flags: Flag.fua, cookie: UInt64(cookie), offset: UInt64(cookie) << 16,
                    length: 4096, payload: [UInt8](repeating: UInt8(cookie), count: 4096))
                batch += Client.request(type: Cmd.read, cookie: 100 + UInt64(cookie), offset: 0, length: 4096)
            }
            try client.send(batch)
            withExtendedLifetime(client) { gate.waitForArrival() }
            armReset(client)
        }
        gate.open()
        export.waitForClose()
        try assertServes(endpoint)
        await assertEveryBackendClosedOnce(server, export, opens: 2)
    }

    // MARK: Stopping half-way

    func testAClientStoppingMidPayloadNeverReachesTheBackend() async throws {
        // 4 KiB is completed in the receive buffer; 1 MiB is read into a scratch buffer.
        for (length, sent) in [(4096, 1000), (1 << 20, 100 << 10)] {
            let (server, endpoint, export) = try startCountingServer()
            do {
                let client = try endpoint.client()
                try client.connect()
                try client.send(
                    Client.request(type: Cmd.write, cookie: 1, length: UInt32(length))
                        + [UInt8](repeating: 7, count: sent))
            }
            export.waitForClose()
            XCTAssertEqual(export.writes.load(ordering: .relaxed), 0, "a partial write reached the backend")
            try assertServes(endpoint)
            await assertEveryBackendClosedOnce(server, export, opens: 2)
        }
    }

    func testAClientStoppingMidHeaderIsClosedCleanly() async throws {
        let (server, endpoint, export) = try startCountingServer()
        do {
            let client = try endpoint.client()
            try client.connect()
            try client.send(Array(Client.request(type: Cmd.read, cookie: 1, length: 512).prefix(10)))
        }
        export.waitForClose()
        try assertServes(endpoint)
        await assertEveryBackendClosedOnce(server, export, opens: 2)
    }

    // MARK: Clients that never finish the handshake

    func testSilentAndHalfwayHandshakesAreDroppedAfterTheHandshakeTimeout() async throws {
        let log = LogRecorder()
        var configuration = ServerConfiguration()
        configuration.handshakeTimeout = .milliseconds(100)
        configuration.logger = log.record
        let (server, endpoint, export) = try startCountingServer(configuration: configuration)

        // Connects and sends nothing at all.
        let silent = try endpoint.client()
        _ = try silent.readGreeting()
        XCTAssertTrue(silent.serverClosed(), "a silent client was not dropped")

        // Sends its flags and half an option, then stalls.
        let stalled = try endpoint.client()
        try stalled.startHandshake()
        try stalled.send(Array.be(Client.optionMagic) + Array.be(Client.Option.go))
        XCTAssertTrue(stalled.serverClosed(), "a stalled client was not dropped")

        log.waitForLines(containing: "closed during the handshake", count: 2)
        XCTAssertEqual(export.opens.load(ordering: .relaxed), 0)
        try assertServes(endpoint)
        await assertEveryBackendClosedOnce(server, export, opens: 1)
    }

    func testATrickleOfHandshakeBytesIsDroppedAtTheNegotiationTimeout() async throws {
        let log = LogRecorder()
        var configuration = ServerConfiguration()
        configuration.handshakeTimeout = nil  // only the whole-negotiation limit applies
        configuration.negotiationTimeout = .milliseconds(200)
        configuration.logger = log.record
        let (server, endpoint, export) = try startCountingServer(configuration: configuration)

        let slow = try endpoint.client()
        try slow.startHandshake()
        XCTAssertTrue(slow.serverClosed(), "a client that never finished the handshake was not dropped")
        log.waitForLines(containing: "dropped: the handshake was not finished within", count: 1)
        XCTAssertEqual(export.opens.load(ordering: .relaxed), 0)
        // A client that negotiates at once is served (and keeps being served after the limit passed,
        // since its deadline was settled when the handshake finished: NegotiationDeadlineTests).
        try assertServes(endpoint)
        await assertEveryBackendClosedOnce(server, export, opens: 1)
    }

    func testWithoutMetaContextsBothMetaContextOptionsAreUnsupported() throws {
        var configuration = ServerConfiguration()
        configuration.offersMetaContexts = false
        let (_, endpoint, _) = try startCountingServer(configuration: configuration)
        let client = try endpoint.client()
        try client.startHandshake()
        try client.sendOption(Client.Option.structuredReply)
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.ack, "structured replies stay offered")
        for option in [Client.Option.listMetaContext, Client.Option.setMetaContext] {
            try client.sendOption(option, Client.metaContextData(queries: ["base:allocation"]))
            XCTAssertEqual(try client.readOptionReply().type, Client.Reply.errUnsupported)
        }
        let export = try client.go()
        XCTAssertEqual(export.size, 4 << 20)
    }

    /// The server's end of each idle TCP connection to `port` runs the keepalive timer (timer code 2
    /// in /proc/net/tcp) exactly when SO_KEEPALIVE is set.
    func testKeepAliveIsSetOnAcceptedTCPConnectionsOnlyWhenAsked() async throws {
        for enabled in [false, true] {
            var configuration = ServerConfiguration()
            configuration.enablesTCPKeepAlive = enabled
            let (_, endpoint, _) = try startCountingServer(configuration: configuration, tcp: true)
            guard case .tcp(let port) = endpoint else { return XCTFail("not TCP") }
            let client = try endpoint.client()
            try client.connect()
            let hex = String(port, radix: 16, uppercase: true)
            let local = ":" + String(repeating: "0", count: 4 - hex.count) + hex
            // Columns: sl local_address rem_address st tx:rx tr:when ... ; the server's end has the
            // listening port as its local port and is ESTABLISHED (01). Its retransmission timer (01)
            // runs until the client's delayed ACK of the handshake's last reply arrives; the kernel
            // state is polled until then (bounded), after which only keepalive (02) or none (00) is left.
            var timer: String?
            var table = ""
            let deadline = ContinuousClock.now + TestWait.limit
            repeat {
                table = try Self.readProcFile("/proc/net/tcp")
                let serverEnds = table.split(separator: "\n").map { $0.split(separator: " ") }.filter {
                    $0.count > 5 && $0[1].hasSuffix(local) && $0[3] == "01"
                }
                XCTAssertEqual(serverEnds.count, 1, table)
                timer = serverEnds.first.map { String($0[5].prefix(2)) }
            } while timer == "01" && ContinuousClock.now < deadline
            XCTAssertEqual(timer, enabled ? "02" : "00", "enabled: \(enabled)")
        }
    }

    /// A /proc file read to its end with read(2) (its size reads as 0, and a single read returns
    /// only the first page).
    static func readProcFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestClientError("open \(path): errno \(errno)") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Limits

    func testAConnectionAboveTheLimitIsRefusedCleanlyAndLogged() async throws {
        let log = LogRecorder()
        var configuration = ServerConfiguration()
        configuration.maximumConnections = 2
        configuration.logger = log.record
        let (server, endpoint, export) = try startCountingServer(configuration: configuration)
        let first = try endpoint.client()
        try first.connect()
        let second = try endpoint.client()
        try second.connect()
        let third = try endpoint.client()
        XCTAssertTrue(third.serverClosed(), "the connection above the limit got more than end of stream")
        log.waitForLines(containing: "refused a connection", count: 1)
        XCTAssertTrue(log.lines.contains { $0.contains("has 2 connections") }, "\(log.lines)")
        // The two accepted connections are unaffected.
        XCTAssertEqual(try first.read(512, at: 0).0, 0)
        XCTAssertEqual(try second.read(512, at: 0).0, 0)
        await assertEveryBackendClosedOnce(server, export, opens: 2)
    }

    func testRefusalsGoToTheErrorLoggerWhenOneIsSet() async throws {
        let errors = LogRecorder()
        let debug = LogRecorder()
        var configuration = ServerConfiguration()
        configuration.maximumConnections = 1
        configuration.errorLogger = errors.record
        configuration.logger = debug.record
        let (server, endpoint, export) = try startCountingServer(configuration: configuration)
        let first = try endpoint.client()
        try first.connect()
        let second = try endpoint.client()
        XCTAssertTrue(second.serverClosed())
        errors.waitForLines(containing: "refused a connection", count: 1)
        XCTAssertFalse(debug.lines.contains { $0.contains("refused a connection") }, "reported once, as an error")
        await assertEveryBackendClosedOnce(server, export, opens: 1)
    }

    func testSlowWritePayloadsHeldPerConnectionAreBoundedByTheSlowRequestLimit() async throws {
        let gate = Gate()
        defer { gate.open() }
        var configuration = ServerConfiguration()
        configuration.maximumSlowRequestsPerConnection = 2
        let (server, endpoint, export) = try startCountingServer(
            capabilities: Capabilities(size: 4 << 20, slowOperations: [.fuaRequests]), configuration: configuration,
            writeGate: gate)
        let client = try endpoint.client()
        try client.connect()
        var batch: [UInt8] = []
        for cookie in 0..<8 {
            batch += Client.request(
                type: Cmd.write, flags: Flag.fua, cookie: UInt64(cookie), offset: UInt64(cookie) << 16,
                length: 16 << 10, payload: [UInt8](repeating: UInt8(cookie), count: 16 << 10))
        }
        // 128 KiB: the whole batch fits in the socket buffers while the server holds back.
        try client.send(batch)
        gate.waitForArrival()
        gate.waitForArrival()
        gate.open()
        var cookies = Set<UInt64>()
        for _ in 0..<8 {
            let reply = try client.readSimpleReply()
            XCTAssertEqual(reply.error, 0)
            cookies.insert(reply.cookie)
        }
        XCTAssertEqual(cookies, Set(0..<8))
        XCTAssertEqual(export.maximumWritesInFlight.load(ordering: .relaxed), 2)
        try client.disconnect()
        XCTAssertTrue(client.serverClosed())
        await assertEveryBackendClosedOnce(server, export, opens: 1)
    }

    func testAnOptionAtTheSizeLimitIsAnsweredAndOneByteMoreDisconnects() async throws {
        let log = LogRecorder()
        var configuration = ServerConfiguration()
        configuration.maximumOptionLength = 1024
        configuration.logger = log.record
        let (server, endpoint, export) = try startCountingServer(configuration: configuration)
        let client = try endpoint.client()
        try client.startHandshake()
        try client.sendOption(99, [UInt8](repeating: 1, count: 1024))
        XCTAssertEqual(try client.readOptionReply().type, Client.Reply.errUnsupported)
        try client.sendOption(99, [UInt8](repeating: 1, count: 1025))
        XCTAssertTrue(client.serverClosed())
        log.waitForLines(containing: "above the limit 1024", count: 1)
        XCTAssertEqual(export.opens.load(ordering: .relaxed), 0)
        await assertEveryBackendClosedOnce(server, export, opens: 0)
    }

    func testAClientHagglingForeverIsDisconnectedAfter1024Options() async throws {
        let (server, endpoint, export) = try startCountingServer()
        let client = try endpoint.client()
        try client.startHandshake()
        var batch: [UInt8] = []
        for _ in 0..<1100 {
            batch += Array.be(Client.optionMagic) + Array.be(Client.Option.structuredReply) + Array.be(UInt32(0))
        }
        try client.send(batch)
        for _ in 0..<1024 {
            XCTAssertEqual(try client.readOptionReply().type, Client.Reply.ack)
        }
        XCTAssertTrue(client.serverClosed())
        await assertEveryBackendClosedOnce(server, export, opens: 0)
    }
}

/// Collects log lines and lets a test wait for one to appear.
final class LogRecorder: Sendable {
    private let storage = LockedValue<[String]>([])
    private let appended = DispatchSemaphore(value: 0)

    var lines: [String] { storage.withLock { $0 } }

    var record: @Sendable (String) -> Void {
        { [self] line in
            storage.withLock { $0.append(line) }
            appended.signal()
        }
    }

    /// Blocks until at least `count` lines contain `text` (or fails the test after 20 s, a safety
    /// net only).
    func waitForLines(containing text: String, count: Int, file: StaticString = #filePath, line: UInt = #line) {
        while storage.withLock({ $0.filter { $0.contains(text) }.count }) < count {
            if !appended.waitOrFail("a log line containing '\(text)' in \(lines)", file: file, line: line) {
                return
            }
        }
    }
}

/// What a counting export records, shared by the provider and its backends.
final class CountingExport: Sendable {
    let opens = Atomic<Int>(0)
    let closes = Atomic<Int>(0)
    let closedTwice = Atomic<Bool>(false)
    let closedWithRequestsInFlight = Atomic<Bool>(false)
    let writes = Atomic<Int>(0)
    let requestsInFlight = Atomic<Int>(0)
    let writesInFlight = Atomic<Int>(0)
    let maximumWritesInFlight = Atomic<Int>(0)
    let readGate: Gate?
    let writeGate: Gate?
    private let closed = DispatchSemaphore(value: 0)

    init(readGate: Gate?, writeGate: Gate?) {
        self.readGate = readGate
        self.writeGate = writeGate
    }

    func recordClose() {
        if requestsInFlight.load(ordering: .acquiring) != 0 {
            closedWithRequestsInFlight.store(true, ordering: .relaxed)
        }
        closes.add(1, ordering: .releasing)
        closed.signal()
    }

    /// Blocks until a backend was closed (or fails the test after 20 s, a safety net only).
    func waitForClose(file: StaticString = #filePath, line: UInt = #line) {
        closed.waitOrFail("a backend to be closed", file: file, line: line)
    }
}

struct CountingProvider: BackendProvider {
    let export: CountingExport
    let capabilities: Capabilities

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> CountingBackend {
        export.opens.add(1, ordering: .relaxed)
        return CountingBackend(export: export, capabilities: capabilities, isClosed: CloseFlag())
    }
}

/// Remembers whether one backend was closed.
final class CloseFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// A backend of zeroes that counts what the server does with it.
struct CountingBackend: BlockBackend {
    let export: CountingExport
    let capabilities: Capabilities
    let isClosed: CloseFlag

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        export.requestsInFlight.add(1, ordering: .acquiringAndReleasing)
        if let gate = export.readGate { await gate.pass() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        export.requestsInFlight.subtract(1, ordering: .acquiringAndReleasing)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        export.requestsInFlight.add(1, ordering: .acquiringAndReleasing)
        let inFlight = export.writesInFlight.add(1, ordering: .acquiringAndReleasing).newValue
        export.maximumWritesInFlight.max(inFlight, ordering: .relaxed)
        if let gate = export.writeGate { await gate.pass() }
        export.writes.add(1, ordering: .relaxed)
        export.writesInFlight.subtract(1, ordering: .acquiringAndReleasing)
        export.requestsInFlight.subtract(1, ordering: .acquiringAndReleasing)
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    func close() async {
        if isClosed.value.exchange(true, ordering: .acquiringAndReleasing) {
            export.closedTwice.store(true, ordering: .relaxed)
        }
        export.recordClose()
    }
}

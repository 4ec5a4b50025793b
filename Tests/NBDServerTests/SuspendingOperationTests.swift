import NBDCore
import NBDServer
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

/// Requests whose operation suspends (`Capabilities.suspendingOperations`): started at once on the
/// connection's thread, several in flight, each replied to when it completes.
final class SuspendingOperationTests: ServerTestCase {
    typealias Client = TestNBDClient
    typealias Cmd = TestNBDClient.Cmd

    private var suspendedReads: [SuspendedReads] = []

    override func tearDown() async throws {
        // A test that failed half-way may leave reads suspended; the server's shutdown waits for them.
        for reads in suspendedReads { reads.releaseEverything() }
        suspendedReads = []
        try await super.tearDown()
    }

    private func startSuspendingServer(configuration: ServerConfiguration = ServerConfiguration()) throws -> (
        path: String, reads: SuspendedReads, provider: SuspendingProvider
    ) {
        let reads = SuspendedReads()
        suspendedReads.append(reads)
        let provider = SuspendingProvider(reads: reads)
        let server = NBDServer(provider: provider, configuration: configuration)
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        track(server)
        return (path, reads, provider)
    }

    private static func expectedBlock(at offset: UInt64, length: Int) -> [UInt8] {
        (0..<length).map { UInt8(truncatingIfNeeded: (offset + UInt64($0)) / 512) }
    }

    func testSuspendedReadsAreAllInFlightAndAnsweredInCompletionOrder() throws {
        let (path, reads, _) = try startSuspendingServer()
        let client = try Client(unixPath: path)
        try client.connect()
        var batch: [UInt8] = []
        for cookie in 1...3 {
            batch += Client.request(type: Cmd.read, cookie: UInt64(cookie), offset: UInt64(cookie) * 4096, length: 512)
        }
        try client.send(batch)
        // All three are suspended at once: none waits for the one before it.
        reads.waitForArrivals(3)
        XCTAssertEqual(reads.maximumInFlight, 3)
        let lengths: [UInt64: Int] = [1: 512, 2: 512, 3: 512]
        for cookie: UInt64 in [3, 1, 2] {
            reads.resume(cookie * 4096)
            let reply = try client.readAnyReply(readLengths: lengths)
            guard case .simple(let simple, let data) = reply else { return XCTFail("expected a simple reply") }
            XCTAssertEqual(simple.cookie, cookie, "the reply of the read completed last-resumed first")
            XCTAssertEqual(simple.error, 0)
            XCTAssertEqual(data, Self.expectedBlock(at: cookie * 4096, length: 512))
        }
    }

    func testARequestThatDoesNotSuspendIsAnsweredWhileOthersAreSuspended() throws {
        let (path, reads, _) = try startSuspendingServer()
        let client = try Client(unixPath: path)
        try client.connect()
        try client.sendRequest(type: Cmd.read, cookie: 1, offset: 0, length: 512)
        reads.waitForArrivals(1)
        XCTAssertEqual(try client.write([7], at: 100, cookie: 2), 0, "a write is answered while the read waits")
        // The suspending read started on the connection's thread, where the inline write ran.
        XCTAssertEqual(reads.startThread(0), reads.writeThreads.withLock { $0.first })
        reads.resume(0)
        let reply = try client.readAnyReply(readLengths: [1: 512])
        XCTAssertEqual(reply.cookie, 1)
    }

    func testAReadResumedOnAMarkedThreadContinuesThereAndOtherwiseOnThePool() throws {
        let (path, reads, _) = try startSuspendingServer()
        let client = try Client(unixPath: path)
        try client.connect()
        try client.sendRequest(type: Cmd.read, cookie: 1, offset: 0, length: 512)
        try client.sendRequest(type: Cmd.read, cookie: 2, offset: 4096, length: 512)
        reads.waitForArrivals(2)
        let marked = reads.resumeFromMarkedThread(0)
        XCTAssertNotNil(marked)
        XCTAssertEqual(reads.resumeThread(0), marked, "resumed inline on the marked thread")
        XCTAssertEqual(try client.readAnyReply(readLengths: [1: 512, 2: 512]).cookie, 1)
        // Resumed from this (unmarked) test thread: the pool takes it over, and it is still answered.
        reads.resume(4096)
        XCTAssertEqual(try client.readAnyReply(readLengths: [1: 512, 2: 512]).cookie, 2)
        XCTAssertNotEqual(reads.resumeThread(4096), marked)
        XCTAssertNotNil(reads.resumeThread(4096))
    }

    func testTheInFlightBoundIsReachedAndReleased() throws {
        var configuration = ServerConfiguration()
        configuration.maximumSlowRequestsPerConnection = 2
        let (path, reads, _) = try startSuspendingServer(configuration: configuration)
        let client = try Client(unixPath: path)
        try client.connect()
        let count = 8
        var batch: [UInt8] = []
        var lengths: [UInt64: Int] = [:]
        for cookie in 0..<count {
            batch += Client.request(type: Cmd.read, cookie: UInt64(cookie), offset: UInt64(cookie) * 512, length: 512)
            lengths[UInt64(cookie)] = 512
        }
        try client.send(batch)
        // The bound is reached: two reads are suspended and the connection reads no further.
        reads.waitForArrivals(2)
        XCTAssertEqual(reads.maximumInFlight, 2)
        // Each completion frees a slot for the next read, until all have been answered.
        var answered = Set<UInt64>()
        for cookie in 0..<count {
            reads.resume(UInt64(cookie) * 512)
            let reply = try client.readAnyReply(readLengths: lengths)
            answered.insert(reply.cookie)
            if cookie + 2 < count { reads.waitForArrivals(1) }
            XCTAssertLessThanOrEqual(reads.maximumInFlight, 2, "more suspended reads than the bound")
        }
        XCTAssertEqual(answered, Set((0..<count).map(UInt64.init)))
    }

    func testAClientThatVanishesCancelsItsSuspendedRequestsAndTheBackendClosesAfterThem() throws {
        let (path, reads, _) = try startSuspendingServer()
        let client = try Client(unixPath: path)
        try client.connect()
        try client.sendRequest(type: Cmd.read, cookie: 1, offset: 0, length: 512)
        try client.sendRequest(type: Cmd.read, cookie: 2, offset: 512, length: 512)
        reads.waitForArrivals(2)
        client.shutdownWriting()
        // End of stream without a disconnect: the connection cancels what is suspended...
        reads.waitForCancellations(2)
        XCTAssertEqual(reads.cancelled, [0, 512])
        // ...and still waits for it before closing the backend.
        XCTAssertEqual(reads.closes.load(ordering: .relaxed), 0, "closed while requests were suspended")
        reads.resume(512)
        reads.resume(0)
        // Nobody will read them, but the replies still go out before the connection ends.
        let first = try client.readAnyReply(readLengths: [1: 512, 2: 512]).cookie
        let second = try client.readAnyReply(readLengths: [1: 512, 2: 512]).cookie
        XCTAssertEqual(Set([first, second]), [1, 2])
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(reads.closes.load(ordering: .relaxed), 1)
    }

    func testDisconnectWaitsForSuspendedRequestsAndAnswersThem() throws {
        let (path, reads, _) = try startSuspendingServer()
        let client = try Client(unixPath: path)
        try client.connect()
        try client.sendRequest(type: Cmd.read, cookie: 1, offset: 0, length: 512)
        try client.sendRequest(type: Cmd.read, cookie: 2, offset: 512, length: 512)
        reads.waitForArrivals(2)
        try client.disconnect()
        XCTAssertEqual(reads.closes.load(ordering: .relaxed), 0, "closed while requests were suspended")
        reads.resume(512)
        XCTAssertEqual(try client.readAnyReply(readLengths: [1: 512, 2: 512]).cookie, 2)
        reads.resume(0)
        XCTAssertEqual(try client.readAnyReply(readLengths: [1: 512, 2: 512]).cookie, 1)
        XCTAssertTrue(client.serverClosed())
        XCTAssertEqual(reads.closes.load(ordering: .relaxed), 1)
        XCTAssertEqual(reads.cancelled, [], "a disconnect lets outstanding requests complete")
    }
}

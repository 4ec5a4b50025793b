import Foundation
import NBDCore
import NBDServer
import NBDTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The payload memory budget in a running server: many clients with large requests in flight stay
/// within it, every reply is right, and a client that stops reading cannot stall the others.
final class PayloadBudgetServerTests: ServerTestCase {
    private static let exportSize = 16 << 20
    private static let readLength = 8 << 20

    /// A budget of two 8 MiB reads.
    private static func configuration(events: Recorded<ServerEvent>? = nil) -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.payloadMemoryBudget = 16 << 20
        if let events {
            configuration.eventHandler = { event in
                if event.kind == .payloadBudgetWait { events.append(event) }
            }
        }
        return configuration
    }

    private func startPatternServer(
        configuration: ServerConfiguration, capabilities: Capabilities? = nil
    ) throws -> (server: NBDServer, path: String, state: TestExportState) {
        let started = try startServer(
            capabilities: capabilities ?? Capabilities(size: UInt64(Self.exportSize)), configuration: configuration)
        started.state.data.withLock { $0 = Self.pattern }
        return started
    }

    /// The export's contents: every 8-byte word holds its own offset, so a misplaced byte shows.
    private static let pattern: [UInt8] = [UInt8](unsafeUninitializedCapacity: exportSize) { buffer, count in
        let raw = UnsafeMutableRawBufferPointer(buffer)
        for word in 0..<(exportSize / 8) {
            raw.storeBytes(of: UInt64(word * 8).littleEndian, toByteOffset: word * 8, as: UInt64.self)
        }
        count = exportSize
    }

    /// Sends `count` 8 MiB reads at once, then reads and checks every reply; returns the error.
    private static func readAll(path: String, client index: Int, count: Int) -> (any Error)? {
        do {
            let client = try TestNBDClient(unixPath: path)
            _ = try client.connect()
            var requests: [UInt8] = []
            var offsets: [UInt64: Int] = [:]
            for request in 0..<count {
                let offset = ((index * 7 + request * 3) % 16) * (512 << 10)
                let cookie = UInt64(index * 100 + request)
                offsets[cookie] = offset
                requests += TestNBDClient.request(
                    type: TestNBDClient.Cmd.read, cookie: cookie, offset: UInt64(offset), length: UInt32(readLength))
            }
            try client.send(requests)
            for _ in 0..<count {
                let reply = try client.readSimpleReply()
                guard reply.error == 0, let offset = offsets.removeValue(forKey: reply.cookie) else {
                    throw TestClientError("reply \(reply.cookie) failed with \(reply.error) or was not asked for")
                }
                let data = try client.receive(readLength)
                let same = data.withUnsafeBytes { received in
                    pattern.withUnsafeBytes { expected in
                        memcmp(received.baseAddress!, expected.baseAddress! + offset, readLength) == 0
                    }
                }
                guard same else { throw TestClientError("client \(index): wrong data for the read at \(offset)") }
            }
            try client.disconnect()
            return nil
        } catch {
            return error
        }
    }

    /// Runs `readAll` for `clients` clients, each on its own thread, and waits for all of them.
    private func runClients(path: String, clients: Range<Int>, readsEach: Int) {
        let failures = Recorded<String>()
        let done = DispatchSemaphore(value: 0)
        for index in clients {
            startThread {
                if let error = Self.readAll(path: path, client: index, count: readsEach) {
                    failures.append("client \(index): \(error)")
                }
                done.signal()
            }
        }
        for index in clients { done.waitOrFail("client \(index) to finish its reads") }
        XCTAssertEqual(failures.all, [])
    }

    func testSixteenClientsWithLargeReadsInFlightStayWithinTheBudget() async throws {
        let events = Recorded<ServerEvent>()
        let (server, path, _) = try startPatternServer(configuration: Self.configuration(events: events))
        runClients(path: path, clients: 0..<16, readsEach: 2)
        XCTAssertLessThanOrEqual(server.peakChargedPayloadBytes, 16 << 20)
        XCTAssertGreaterThanOrEqual(server.peakChargedPayloadBytes, Self.readLength)
        await waitUntil("every charge to be returned") { server.chargedPayloadBytes == 0 }
        let waits = events.all
        XCTAssertFalse(waits.isEmpty, "32 reads of 8 MiB under a 16 MiB budget must wait")
        XCTAssertLessThanOrEqual(waits.count, 20, "waits are reported at most once a second")
        XCTAssertEqual(waits.first?.level, .info)
        XCTAssertEqual(waits.first?.metadata["budget"], String(16 << 20))
        XCTAssertNotNil(waits.first?.connectionID)
    }

    func testSlowReadsAreChargedUntilTheirReplyIsHandedToTheWriter() async throws {
        var capabilities = Capabilities(size: UInt64(Self.exportSize))
        capabilities.slowOperations = [.read, .write]
        var configuration = Self.configuration()
        configuration.inlineSlowOperationThreshold = nil
        let (server, path, _) = try startPatternServer(configuration: configuration, capabilities: capabilities)
        runClients(path: path, clients: 0..<8, readsEach: 4)
        XCTAssertLessThanOrEqual(server.peakChargedPayloadBytes, 16 << 20)
        XCTAssertGreaterThanOrEqual(server.peakChargedPayloadBytes, Self.readLength)
        await waitUntil("every charge to be returned") { server.chargedPayloadBytes == 0 }
    }

    func testAClientThatNeverReadsItsRepliesDoesNotStallTheOthers() async throws {
        let (server, path, _) = try startPatternServer(configuration: Self.configuration())
        // Four 8 MiB reads, none of whose replies is read: the server's send blocks on the first
        // (a Unix socket queues a few MiB), and its connection keeps that reply's charge.
        let stuck = try TestNBDClient(unixPath: path)
        _ = try stuck.connect()
        var requests: [UInt8] = []
        for cookie in 0..<4 {
            requests += TestNBDClient.request(
                type: TestNBDClient.Cmd.read, cookie: UInt64(cookie), offset: 0, length: UInt32(Self.readLength))
        }
        try stuck.send(requests)
        await waitUntil("the stuck client's reply to be charged") { server.chargedPayloadBytes >= Self.readLength }
        // The others share what is left, one 8 MiB read at a time, and all finish.
        runClients(path: path, clients: 1..<9, readsEach: 2)
        XCTAssertLessThanOrEqual(server.peakChargedPayloadBytes, 16 << 20)
        withExtendedLifetime(stuck) {}
    }

    func testLargeWritesAreChargedAndTheirBufferIsKeptOnlyWhileCharged() async throws {
        var configuration = Self.configuration()
        configuration.receiveBufferSize = 256 << 10
        let (server, path, state) = try startPatternServer(configuration: configuration)
        let client = try TestNBDClient(unixPath: path)
        _ = try client.connect()
        // The export's first 4 MiB, written elsewhere: every word then differs from what was there.
        let payload = Array(Self.pattern[0..<(4 << 20)])
        for round in 0..<3 {
            XCTAssertEqual(try client.write(payload, at: UInt64(round << 20), cookie: UInt64(round)), 0)
        }
        // The connection's payload pool keeps the 4 MiB buffer for the next write, charged as kept;
        // a write takes its own charge before the kept buffer's is returned.
        XCTAssertEqual(server.peakChargedPayloadBytes, 8 << 20, "one write in flight and one buffer kept")
        XCTAssertEqual(server.chargedPayloadBytes, 4 << 20, "after the writes only the kept buffer is charged")
        XCTAssertEqual(state.data.withLock { Array($0[(2 << 20)..<(6 << 20)]) }, payload)
        try client.disconnect()
    }

    func testWithoutABudgetNothingIsCharged() async throws {
        var configuration = ServerConfiguration()
        configuration.payloadMemoryBudget = nil
        let (server, path, _) = try startPatternServer(configuration: configuration)
        runClients(path: path, clients: 0..<2, readsEach: 2)
        XCTAssertEqual(server.peakChargedPayloadBytes, 0)
    }

    func testTheDefaultBudgetIsAQuarterOfPhysicalMemory() {
        let physical = sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
        XCTAssertEqual(ServerConfiguration().payloadMemoryBudget, physical / 4)
        XCTAssertEqual(ServerConfiguration.defaultPayloadMemoryBudget, physical / 4)
    }
}

import Foundation
import NBDClient
import NBDCore
import NBDTestSupport
import XCTest

/// A server that sends nonsense closes that connection with a clear error, fails every request in
/// flight and every later one, and crashes nothing. Replies in any order are matched by cookie.
final class MisbehavingServerTests: ClientTestCase {
    /// Starts a scripted server that reads `requests` requests and then runs `reply`, connects, sends
    /// that many 4 KiB reads at once, and returns each read's outcome and the connection.
    private func readsAgainst(
        requests: Int, reply: @escaping @Sendable (ScriptedServer.Peer, [ScriptedServer.Request]) -> Void
    ) async throws -> (results: [Result<[UInt8], NBDError>], connection: NBDConnection, server: ScriptedServer) {
        let server = try ScriptedServer(path: try socketPath("scripted")) { peer in
            var received: [ScriptedServer.Request] = []
            while received.count < requests, let request = peer.request() { received.append(request) }
            reply(peer, received)
        }
        let connection = try await NBDConnection.connect(to: .unix(server.path))
        let results = try await withBoundedWait("replies to \(requests) reads") {
            await withTaskGroup(of: (Int, Result<[UInt8], NBDError>).self) { group in
                for index in 0..<requests {
                    group.addTask {
                        do throws(NBDError) {
                            return (index, .success(try await connection.read(count: 4096, at: UInt64(index) * 4096)))
                        } catch {
                            return (index, .failure(error))
                        }
                    }
                }
                var results = [Result<[UInt8], NBDError>](repeating: .success([]), count: requests)
                for await (index, result) in group { results[index] = result }
                return results
            }
        }
        return (results, connection, server)
    }

    /// Asserts every read failed with `code` and a message containing `text`, and that a later
    /// request fails the same way without reaching the server.
    private func assertConnectionFailed(
        _ outcome: (results: [Result<[UInt8], NBDError>], connection: NBDConnection, server: ScriptedServer),
        code: NBDError.Code, mentioning text: String, file: StaticString = #filePath, line: UInt = #line
    ) async {
        for result in outcome.results {
            guard case .failure(let error) = result else {
                XCTFail("a read succeeded on a connection whose server sent nonsense", file: file, line: line)
                continue
            }
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
            XCTAssertTrue(
                error.message.contains(text), "\(error.message) should mention \(text)", file: file, line: line)
        }
        XCTAssertNotNil(outcome.connection.closedReason, file: file, line: line)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await outcome.connection.flush() }, code: code, file: file, line: line)
        _ = outcome.server.finished.waitOrFail("the scripted server to finish", file: file, line: line)
    }

    func testRepliesInReverseOrderAreMatchedByCookie() async throws {
        let outcome = try await readsAgainst(requests: 8) { peer, requests in
            for request in requests.reversed() {
                let fill = UInt8(request.offset / 4096)
                peer.send(
                    ScriptedServer.chunk(
                        cookie: request.cookie, type: 1,
                        payload: ScriptedServer.be(request.offset)
                            + [UInt8](repeating: fill, count: Int(request.length))))
            }
            _ = peer.request()  // waits for the disconnect
        }
        for (index, result) in outcome.results.enumerated() {
            XCTAssertEqual(try result.get(), [UInt8](repeating: UInt8(index), count: 4096), "read \(index)")
        }
        await outcome.connection.disconnect()
    }

    func testBadMagicClosesTheConnection() async throws {
        let outcome = try await readsAgainst(requests: 4) { peer, _ in
            peer.send([0xde, 0xad, 0xbe, 0xef] + [UInt8](repeating: 0, count: 12))
        }
        await assertConnectionFailed(outcome, code: .ioError, mentioning: "bad magic")
    }

    func testReplyToAnUnknownCookieClosesTheConnection() async throws {
        let outcome = try await readsAgainst(requests: 4) { peer, _ in
            peer.send(ScriptedServer.simpleReply(cookie: 0xdead_beef))
        }
        await assertConnectionFailed(outcome, code: .ioError, mentioning: "0xdeadbeef")
    }

    func testChunkPastTheRequestClosesTheConnection() async throws {
        let outcome = try await readsAgainst(requests: 4) { peer, requests in
            let request = requests[0]
            peer.send(
                ScriptedServer.chunk(
                    cookie: request.cookie, type: 1,
                    payload: ScriptedServer.be(request.offset + 4000) + [UInt8](repeating: 1, count: 200)))
        }
        await assertConnectionFailed(outcome, code: .ioError, mentioning: "outside the request")
    }

    func testOverLongErrorMessageClosesTheConnection() async throws {
        let outcome = try await readsAgainst(requests: 4) { peer, requests in
            let message = [UInt8](repeating: UInt8(ascii: "x"), count: 5000)
            peer.send(
                ScriptedServer.chunk(
                    cookie: requests[0].cookie, type: 0x8001,
                    payload: ScriptedServer.be(UInt32(5)) + ScriptedServer.be(UInt16(5000)) + message))
        }
        await assertConnectionFailed(outcome, code: .ioError, mentioning: "error chunk of 5006 bytes")
    }

    func testErrorMessageLongerThanItsChunkClosesTheConnection() async throws {
        let outcome = try await readsAgainst(requests: 2) { peer, requests in
            peer.send(
                ScriptedServer.chunk(
                    cookie: requests[0].cookie, type: 0x8001,
                    payload: ScriptedServer.be(UInt32(5)) + ScriptedServer.be(UInt16(100)) + Array("short".utf8)))
        }
        await assertConnectionFailed(outcome, code: .ioError, mentioning: "error message of 100 bytes")
    }

    func testTruncatedReadDataClosesTheConnection() async throws {
        let outcome = try await readsAgainst(requests: 3) { peer, requests in
            peer.send(ScriptedServer.simpleReply(cookie: requests[0].cookie) + [UInt8](repeating: 7, count: 1000))
        }
        await assertConnectionFailed(outcome, code: .ioError, mentioning: "truncated")
    }

    func testServerClosingWithRequestsInFlightFailsThemWithShutdown() async throws {
        let outcome = try await readsAgainst(requests: 5) { _, _ in }
        await assertConnectionFailed(outcome, code: .shutdown, mentioning: "closed the connection")
    }

    func testReadReplyCoveringLessThanTheRequestClosesTheConnection() async throws {
        let outcome = try await readsAgainst(requests: 2) { peer, requests in
            peer.send(
                ScriptedServer.chunk(
                    cookie: requests[0].cookie, type: 1,
                    payload: ScriptedServer.be(requests[0].offset) + [UInt8](repeating: 1, count: 100)))
        }
        await assertConnectionFailed(outcome, code: .ioError, mentioning: "covering 100 of the 4096")
    }

    func testStructuredErrorKeepsTheServersErrnoAndMessageAndTheConnection() async throws {
        let outcome = try await readsAgainst(requests: 2) { peer, received in
            // The reads may arrive in either order; the one at offset 0 fails.
            let requests = received.sorted { $0.offset < $1.offset }
            let message = Array("disk on fire".utf8)
            peer.send(
                ScriptedServer.chunk(
                    cookie: requests[0].cookie, type: 0x8001,
                    payload: ScriptedServer.be(UInt32(28)) + ScriptedServer.be(UInt16(message.count)) + message))
            peer.send(
                ScriptedServer.chunk(
                    cookie: requests[1].cookie, type: 2, flags: 1,
                    payload: ScriptedServer.be(requests[1].offset) + ScriptedServer.be(UInt32(4096))))
            _ = peer.request()
        }
        guard case .failure(let error) = outcome.results[0] else { return XCTFail("read 0 should fail") }
        XCTAssertEqual(error, NBDError(.noSpace, "disk on fire"))
        XCTAssertEqual(try outcome.results[1].get(), [UInt8](repeating: 0, count: 4096), "a hole chunk reads as zeroes")
        XCTAssertNil(outcome.connection.closedReason)
        await outcome.connection.disconnect()
    }
}

/// Back-pressure: at most `maximumBytesInFlight` payload bytes are sent before replies come back.
final class BackPressureTests: ClientTestCase {
    func testWritesBeyondTheInFlightBudgetWaitForReplies() async throws {
        let proceed = DispatchSemaphore(value: 0)
        let seenBeforeReplies = LockedBox(0)
        let server = try ScriptedServer(path: try socketPath("scripted")) { peer in
            var first: [ScriptedServer.Request] = []
            while first.count < 2, let request = peer.request() { first.append(request) }
            seenBeforeReplies.set(first.count)
            guard proceed.waitOrFail("the test to check the waiting requests") else { return }
            var pending = first
            var answered = 0
            while answered < 4 {
                if pending.isEmpty, let request = peer.request() { pending.append(request) }
                guard !pending.isEmpty else { return }
                peer.send(ScriptedServer.simpleReply(cookie: pending.removeFirst().cookie))
                answered += 1
            }
            _ = peer.request()
        }
        let connection = try await NBDConnection.connect(
            to: .unix(server.path), configuration: ClientConfiguration(maximumBytesInFlight: 8192))
        let writes = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<4 {
                    group.addTask {
                        try await connection.write([UInt8](repeating: 1, count: 4096), at: UInt64(index) * 4096)
                    }
                }
                try await group.waitForAll()
            }
        }
        await waitUntil("two writes to wait for room") { connection.occupancy.waiting == 2 }
        XCTAssertEqual(connection.occupancy.admitted, 2)
        XCTAssertEqual(connection.occupancy.bytes, 8192)
        await waitUntil("the server to read the two admitted writes") { seenBeforeReplies.get() == 2 }
        proceed.signal()
        try await withBoundedWait("the writes to finish") { try await writes.value }
        XCTAssertEqual(connection.occupancy.admitted, 0)
        await connection.disconnect()
        _ = server.finished.waitOrFail("the scripted server to finish")
    }
}

/// A value shared with a server thread.
final class LockedBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.withLock { value } }
    func set(_ newValue: Value) { lock.withLock { value = newValue } }
}

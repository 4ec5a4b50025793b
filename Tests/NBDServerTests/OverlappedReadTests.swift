import Dispatch
import NBDBackends
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

@testable import NBDServer

#if canImport(Glibc)
    import Glibc
#endif

/// While the end of a large reply waits for the client to drain the socket, the connection
/// performs the next read (`ReplyTail`), as long as such reads have been quick; replies still leave
/// whole and in order.
final class OverlappedReadTests: ServerTestCase {
    typealias Cmd = TestNBDClient.Cmd

    private static let mebibyte = 1 << 20
    /// What the server asks for its Unix sockets' send buffer: far below one reply.
    private static let sendBuffer = 32 << 10
    private static let pattern = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }

    /// A client of a server over 4 MiB of memory holding ``pattern``, whose reads `watch` sees.
    private func connect(watch: ReadWatch) throws -> TestNBDClient {
        var configuration = ServerConfiguration()
        configuration.unixSocketSendBufferSize = Self.sendBuffer
        let provider = FilterStack([ReadWatchLayer(watch: watch)], over: try MemoryBackendProvider(size: 4 << 20))
        let server = NBDServer(provider: provider, configuration: configuration)
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        track(server)
        let client = try TestNBDClient(unixPath: path)
        try client.connect()
        for part in 0..<4 {
            let start = part * Self.mebibyte
            let bytes = Array(Self.pattern[start..<(start + Self.mebibyte)])
            XCTAssertEqual(try client.write(bytes, at: UInt64(start), cookie: UInt64(100 + part)), 0)
        }
        return client
    }

    /// Sends 1 MiB reads at `mebibytes` (offsets in MiB, cookie = offset + 1) in one `send`, so the
    /// server has all of them before it replies to the first.
    private func sendReads(_ client: TestNBDClient, at mebibytes: [Int]) throws {
        try client.send(
            mebibytes.flatMap {
                TestNBDClient.request(
                    type: Cmd.read, cookie: UInt64($0 + 1), offset: UInt64($0 * Self.mebibyte),
                    length: UInt32(Self.mebibyte))
            })
    }

    /// Receives the reply to the read at `mebibyte` and checks its cookie and data.
    private func expectReply(_ client: TestNBDClient, at mebibyte: Int, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        let reply = try client.readSimpleReply()
        XCTAssertEqual(reply.cookie, UInt64(mebibyte + 1), "replies in order", file: file, line: line)
        XCTAssertEqual(reply.error, 0, file: file, line: line)
        let start = mebibyte * Self.mebibyte
        let data = try client.receive(Self.mebibyte)
        XCTAssertTrue(data[...] == Self.pattern[start..<(start + Self.mebibyte)], "data intact", file: file, line: line)
    }

    func testTheNextReadRunsWhileALargeReplyWaitsForTheClient() throws {
        let watch = ReadWatch()
        let client = try connect(watch: watch)
        // The first read behind a large reply is timed, not yet overlapped (nothing is known).
        try sendReads(client, at: [0, 1])
        try expectReply(client, at: 0)
        try expectReply(client, at: 1)

        // The client reads nothing now. The reply at 2 MiB cannot fit in the socket, yet the read at
        // 3 MiB starts: the server performs it before waiting for the client.
        let nextRead = watch.arrivals(at: 3 << 20)
        try sendReads(client, at: [2, 3])
        nextRead.waitOrFail("the read at 3 MiB to start while the reply before it waits for the client")
        try expectReply(client, at: 2)
        try expectReply(client, at: 3)
    }

    func testSlowReadsWaitForTheWholeReplyBeforeThem() throws {
        let watch = ReadWatch()
        let client = try connect(watch: watch)
        // Reads that keep their thread 5 ms each: the timed one puts the average above the limit.
        watch.busyTime.withLock { $0 = .milliseconds(5) }
        XCTAssertLessThan(Connection<MemoryBackendProvider>.overlappedReadLimit, .milliseconds(5))
        try sendReads(client, at: [0, 1])
        try expectReply(client, at: 0)
        try expectReply(client, at: 1)

        // Now the client reads as fast as it can, counting the bytes; when the read at 3 MiB starts,
        // all of the reply before it but what the socket holds must have been received.
        watch.counter.store(0, ordering: .sequentiallyConsistent)
        try sendReads(client, at: [2, 3])
        var buffer = [UInt8](repeating: 0, count: 4096)
        let total = 2 * (16 + Self.mebibyte)
        var received = 0
        while received < total {
            let count = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, min($0.count, total - received), 0) }
            guard count > 0 else { return XCTFail("the server closed the connection (errno \(errno))") }
            received += count
            watch.counter.add(count, ordering: .sequentiallyConsistent)
        }
        let socketHolds = try XCTUnwrap(Socket.unixSendBufferSize(askingFor: Self.sendBuffer))
        let atStart = try XCTUnwrap(watch.counterAtStart(of: 3 << 20), "the read at 3 MiB ran")
        XCTAssertGreaterThanOrEqual(
            atStart, 16 + Self.mebibyte - socketHolds - buffer.count,
            "the read at 3 MiB started before the reply at 2 MiB was sent whole")
    }
}

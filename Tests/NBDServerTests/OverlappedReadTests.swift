import Dispatch
import NBDBackends
import NBDCore
import NBDTestSupport
import NBDWire
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

    private static let mebibyte = ReadOverlapScenario.mebibyte
    /// What the server asks for its Unix sockets' send buffer: far below one reply.
    private static let sendBuffer = 32 << 10

    /// A client of a server over 4 MiB of memory holding the scenario's pattern, whose reads `watch`
    /// sees, and the scenario over it.
    /// `readsCountAsQuick` raises the server's limit on the average overlapped read far above any
    /// read here, so that the overlap is checked, not how fast this machine copies 1 MiB (under a
    /// sanitizer on a loaded machine, more than the 1 ms default).
    private func connect(watch: ReadWatch, readsCountAsQuick: Bool) throws -> (TestNBDClient, ReadOverlapScenario) {
        var configuration = ServerConfiguration()
        configuration.unixSocketSendBufferSize = Self.sendBuffer
        if readsCountAsQuick { configuration.overlappedReadLimit = .seconds(3600) }
        let provider = FilterStack([ReadWatchLayer(watch: watch)], over: try MemoryBackendProvider(size: 4 << 20))
        let server = NBDServer(provider: provider, configuration: configuration)
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        track(server)
        let client = try TestNBDClient(unixPath: path)
        try client.connect()
        for part in 0..<4 {
            let start = part * Self.mebibyte
            let bytes = Array(ReadOverlapScenario.pattern[start..<(start + Self.mebibyte)])
            XCTAssertEqual(try client.write(bytes, at: UInt64(start), cookie: UInt64(100 + part)), 0)
        }
        let scenario = ReadOverlapScenario(
            sendReads: { mebibytes in
                try client.send(
                    mebibytes.flatMap {
                        TestNBDClient.request(
                            type: Cmd.read, cookie: UInt64($0 + 1), offset: UInt64($0 * Self.mebibyte),
                            length: UInt32(Self.mebibyte))
                    })
            },
            receiveReply: {
                let reply = try client.readSimpleReply()
                return (reply.cookie, reply.error, reply.error == 0 ? try client.receive(Self.mebibyte) : [])
            })
        return (client, scenario)
    }

    func testTheNextReadRunsWhileALargeReplyWaitsForTheClient() throws {
        let watch = ReadWatch()
        try connect(watch: watch, readsCountAsQuick: true).1.run(watch: watch)
    }

    func testSlowReadsWaitForTheWholeReplyBeforeThem() throws {
        let watch = ReadWatch()
        let (client, scenario) = try connect(watch: watch, readsCountAsQuick: false)
        // Reads that keep their thread 5 ms each: the timed one puts the average above the default
        // limit (a sanitizer only makes them slower).
        watch.busyTime.withLock { $0 = .milliseconds(5) }
        XCTAssertLessThan(ServerConfiguration().overlappedReadLimit, .milliseconds(5))
        try scenario.sendReads(at: [0, 1])
        try scenario.expectReply(at: 0)
        try scenario.expectReply(at: 1)

        // Now the client reads as fast as it can, counting the bytes; when the read at 3 MiB starts,
        // all of the reply before it but what the socket holds must have been received.
        watch.counter.store(0, ordering: .sequentiallyConsistent)
        try scenario.sendReads(at: [2, 3])
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

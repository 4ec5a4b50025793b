import Foundation
import NBDClient
import NBDCore
import NBDProxy
import NBDServer
import NBDTestSupport
import NBDWire
import Synchronization
import XCTest

/// Opens the same backend for every connection.
private struct OneBackendProvider: BackendProvider {
    let backend: TestMemoryBackend
    func open(_ connection: ConnectionInfo) async throws(NBDError) -> TestMemoryBackend { backend }
}

/// A backend whose flushes and FUA writes wait at a gate, to see when the proxy acknowledges them.
private struct GatedBackend: BlockBackend {
    let inner: TestMemoryBackend
    let gate: AsyncGate
    let fuaGate: AsyncGate
    var capabilities: Capabilities { inner.capabilities }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        try await inner.read(into: buffer, at: offset, flags: flags)
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if flags.contains(.fua) { await fuaGate.pass() }
        try await inner.write(data, at: offset, flags: flags)
    }
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await inner.zero(count: count, at: offset, flags: flags)
    }
    func flush(flags: CommandFlags) async throws(NBDError) {
        await gate.pass()
    }
}

private struct GatedProvider: BackendProvider {
    let backend: GatedBackend
    func open(_ connection: ConnectionInfo) async throws(NBDError) -> GatedBackend { backend }
}

/// The `nbd` backend against this package's server in-process: capabilities, data, errors and block
/// status pass through; parameters are checked with errors that name them.
final class NBDProxyTests: XCTestCase {
    private var servers: [NBDServer] = []
    private var directory: String!

    override func setUpWithError() throws {
        directory = "/tmp/nbd-proxy-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        for server in servers { await server.shutdown() }
        servers = []
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func upstream(_ capabilities: Capabilities) throws -> (path: String, backend: TestMemoryBackend) {
        let backend = TestMemoryBackend(capabilities: capabilities)
        let server = NBDServer(provider: OneBackendProvider(backend: backend))
        let path = "\(directory!)/upstream-\(servers.count)"
        try server.listen(on: .unix(path: path))
        servers.append(server)
        return (path, backend)
    }

    func testCapabilitiesComeFromTheUpstream() async throws {
        let upstreamCapabilities = Capabilities(
            size: 65536, canFlush: true, fua: .none, canTrim: false, canZero: true, canFastZero: false,
            cache: .native, canExtents: true, canMultiConn: true,
            blockSize: BlockSizeConstraints(minimum: 512, preferred: 4096, maximumPayload: 65536))
        let (path, _) = try upstream(upstreamCapabilities)
        let provider = try await NBDProxyProvider(parameters: ["socket": path], options: BackendOptions())
        let backend = try await provider.open(ConnectionInfo())
        let proxied = backend.capabilities
        XCTAssertEqual(proxied.size, 65536)
        XCTAssertTrue(proxied.isWritable)
        XCTAssertTrue(proxied.canFlush)
        XCTAssertEqual(proxied.fua, .none)
        XCTAssertFalse(proxied.canTrim)
        XCTAssertTrue(proxied.canZero)
        XCTAssertFalse(proxied.canFastZero)
        XCTAssertEqual(proxied.cache, .native)
        XCTAssertTrue(proxied.canExtents)
        XCTAssertTrue(proxied.canMultiConn)
        XCTAssertEqual(proxied.blockSize, upstreamCapabilities.blockSize)
        XCTAssertEqual(proxied.slowOperations, [], "nothing holds a thread while the upstream answers")
        XCTAssertEqual(proxied.suspendingOperations, .all, "every request suspends until the upstream answers")
        await backend.close()
    }

    func testReadOnlyOptionMakesTheProxyReadOnly() async throws {
        let (path, _) = try upstream(Capabilities(size: 65536))
        let provider = try await NBDProxyProvider(
            parameters: ["socket": path], options: BackendOptions(isReadOnly: true))
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertFalse(backend.capabilities.isWritable)
        await backend.close()
    }

    func testDataErrorsAndBlockStatusPassThrough() async throws {
        let (path, upstreamBackend) = try upstream(Capabilities(size: 65536, canExtents: true))
        let provider = try await NBDProxyProvider(
            parameters: ["uri": "nbd+unix:///?socket=\(path)"], options: BackendOptions())
        let backend = try await provider.open(ConnectionInfo())
        try await backend.writeBytes(Array(repeating: 9, count: 4096), at: 4096, flags: .fua)
        let read = try await backend.readBytes(4096, at: 4096)
        XCTAssertEqual(read, Array(repeating: 9, count: 4096))
        upstreamBackend.failNext(.write, with: NBDError(.noSpace, "upstream is full"))
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .noSpace)
        XCTAssertEqual(error?.message, "upstream is full")
        upstreamBackend.failNext(.flush, with: NBDError(.ioError, "flush failed"))
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.flush(flags: []) }, code: .ioError)
        let extents = try await backend.extents(count: 65536, at: 0, flags: [])
        XCTAssertFalse(extents.isEmpty)
        XCTAssertLessThanOrEqual(extents.reduce(0) { $0 + $1.length }, 65536)
        let one = try await backend.extents(count: 65536, at: 0, flags: .requestOne)
        XCTAssertEqual(one.count, 1)
        await backend.close()
        XCTAssertNotNil(backend.upstream.closedReason, "closing the backend disconnects its own upstream connection")
    }

    func testLargeWritesAreSentUpstreamFromTheForwardingThread() async throws {
        let (path, upstreamBackend) = try upstream(Capabilities(size: 4 << 20))
        let provider = try await NBDProxyProvider(parameters: ["socket": path], options: BackendOptions())
        let backend = try await provider.open(ConnectionInfo())
        guard let forwarder = backend.forwarder else { return XCTFail("a writable proxy has a forwarding thread") }
        try await backend.writeBytes(Array(repeating: 3, count: 4096), at: 0)
        XCTAssertEqual(forwarder.jobsRunOnThread.load(ordering: .relaxed), 0, "a small write is sent from the caller's thread")
        let large = (0..<16).flatMap { [UInt8](repeating: UInt8($0 + 1), count: 65536) }
        try await backend.writeBytes(large, at: 1 << 20, flags: .fua)
        XCTAssertEqual(forwarder.jobsRunOnThread.load(ordering: .relaxed), 1, "the 1 MiB write started on the forwarding thread")
        do {
            let actual = try await upstreamBackend.readBytes(1 << 20, at: 1 << 20)
            XCTAssertEqual(actual, large)
        }
        do {
            let actual = try await upstreamBackend.readBytes(4096, at: 0)
            XCTAssertEqual(actual, Array(repeating: 3, count: 4096))
        }
        await backend.close()
    }

    func testLargeWritesThroughAFrontServerArriveIntactAndASharedUpstreamHasNoForwardingThread() async throws {
        let (path, upstreamBackend) = try upstream(Capabilities(size: 4 << 20))
        let provider = try await NBDProxyProvider(parameters: ["socket": path], options: BackendOptions())
        let front = NBDServer(provider: provider)
        let frontPath = "\(directory!)/front"
        try front.listen(on: .unix(path: frontPath))
        servers.append(front)
        let client = try await NBDConnection.connect(to: .unix(frontPath))
        // Several 1 MiB writes in flight at once, then a read of everything back through the proxy.
        let expected = (0..<64).flatMap { [UInt8](repeating: UInt8($0 * 3 + 1), count: 65536) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<4 {
                let piece = Array(expected[index << 20..<(index + 1) << 20])
                group.addTask { try await client.write(piece, at: UInt64(index) << 20) }
            }
            try await group.waitForAll()
        }
        do {
            let actual = try await client.read(count: 4 << 20, at: 0)
            XCTAssertEqual(actual, expected)
        }
        do {
            let actual = try await upstreamBackend.readBytes(4 << 20, at: 0)
            XCTAssertEqual(actual, expected)
        }
        await client.disconnect()

        let shared = try await NBDProxyProvider(
            parameters: ["socket": path, "shared": "true"], options: BackendOptions())
        let sharedBackend = try await shared.open(ConnectionInfo())
        XCTAssertNil(sharedBackend.forwarder, "replies over a shared connection resume on the pool")
        await sharedBackend.close()
        await shared.shutdown()
    }

    func testFlushAndFUAWriteAreAcknowledgedOnlyAfterTheUpstreamAcknowledgedThem() async throws {
        let gate = AsyncGate("upstream flush")
        let fuaGate = AsyncGate("upstream FUA write")
        let upstreamBackend = GatedBackend(
            inner: TestMemoryBackend(capabilities: Capabilities(size: 65536)), gate: gate, fuaGate: fuaGate)
        let server = NBDServer(provider: GatedProvider(backend: upstreamBackend))
        let path = "\(directory!)/gated"
        try server.listen(on: .unix(path: path))
        servers.append(server)
        let provider = try await NBDProxyProvider(parameters: ["socket": path], options: BackendOptions())
        let backend = try await provider.open(ConnectionInfo())
        let finished = LockedCounter()
        let flush = Task {
            try await backend.flush(flags: [])
            finished.increment()
            try await backend.writeBytes([1, 2, 3], at: 0, flags: .fua)
            finished.increment()
        }
        await gate.waitForArrivals(1)
        XCTAssertEqual(finished.value, 0, "the flush was acknowledged while the upstream still held it")
        await gate.open()
        await fuaGate.waitForArrivals(1)
        XCTAssertEqual(finished.value, 1, "the FUA write was acknowledged while the upstream still held it")
        await fuaGate.open()
        try await withBoundedWait("the flush and the FUA write") { try await flush.value }
        XCTAssertEqual(finished.value, 2)
        await backend.close()
    }

    func testTCPUpstreamSuspendsEveryOperationAndPassesDataThrough() async throws {
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 65536))
        let server = NBDServer(provider: OneBackendProvider(backend: backend))
        let bound = try server.listen(on: .tcp(host: "127.0.0.1", port: 0))
        servers.append(server)
        guard case .tcp(_, let port) = bound else { return XCTFail("not a TCP address: \(bound)") }
        let provider = try await NBDProxyProvider(
            parameters: ["hostname": "127.0.0.1", "port": String(port)], options: BackendOptions())
        let proxied = try await provider.open(ConnectionInfo())
        XCTAssertEqual(proxied.capabilities.suspendingOperations, .all, "a TCP upstream is pipelined like a Unix one")
        XCTAssertEqual(proxied.capabilities.slowOperations, [])
        try await proxied.writeBytes(Array(repeating: 4, count: 512), at: 512)
        let back = try await proxied.readBytes(512, at: 512)
        XCTAssertEqual(back, Array(repeating: 4, count: 512))
        await proxied.close()

        let uriProvider = try await NBDProxyProvider(
            parameters: ["uri": "nbd://127.0.0.1:\(port)/"], options: BackendOptions())
        XCTAssertEqual(uriProvider.endpoint, NBDEndpoint(.tcp(host: "127.0.0.1", port: String(port))))
    }

    func testRetryConnectsAgainAfterAFailedAttempt() async throws {
        // The pause before the first retry starts the upstream, so the second attempt succeeds
        // without depending on how long anything takes.
        let path = "\(directory!)/late-upstream"
        let server = NBDServer(
            provider: OneBackendProvider(backend: TestMemoryBackend(capabilities: Capabilities(size: 4096))))
        servers.append(server)
        let pauses = LockedCounter()
        let provider = try await NBDProxyProvider(
            endpoint: .unix(path), shared: true, retries: 3,
            pauseBeforeRetry: { _ in
                pauses.increment()
                _ = try? server.listen(on: .unix(path: path))
            })
        XCTAssertEqual(pauses.value, 1, "one failed attempt, then a successful one")
        XCTAssertTrue(provider.isShared)
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertEqual(backend.capabilities.size, 4096)
        await provider.shutdown()
    }

    func testWithoutRetryAFailedConnectFailsAtOnce() async throws {
        let pauses = LockedCounter()
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                _ = try await NBDProxyProvider(
                    endpoint: .unix("\(self.directory!)/nobody"), shared: true, retries: 0,
                    pauseBeforeRetry: { _ in pauses.increment() })
            }, code: .ioError)
        XCTAssertNotNil(error)
        XCTAssertEqual(pauses.value, 0)
    }

    func testSharedServesEveryClientOverOneUpstreamConnection() async throws {
        let (path, _) = try upstream(Capabilities(size: 65536))
        let provider = try await NBDProxyProvider(
            parameters: ["socket": path, "shared": "true"], options: BackendOptions())
        let first = try await provider.open(ConnectionInfo())
        let second = try await provider.open(ConnectionInfo())
        XCTAssertTrue(first.upstream === second.upstream)
        await first.close()
        XCTAssertNil(second.upstream.closedReason, "closing one client's backend keeps the shared connection")
        try await second.writeBytes([5], at: 0)
        await second.close()
        await provider.shutdown()
        XCTAssertNotNil(second.upstream.closedReason)
    }

    func testEachClientConnectionGetsItsOwnUpstreamConnectionByDefault() async throws {
        let (path, _) = try upstream(Capabilities(size: 65536))
        let provider = try await NBDProxyProvider(parameters: ["socket": path], options: BackendOptions())
        let first = try await provider.open(ConnectionInfo())
        let second = try await provider.open(ConnectionInfo())
        XCTAssertFalse(first.upstream === second.upstream)
        await first.close()
        await second.close()
    }

    func testAnUnreachableUpstreamRefusesTheConnectionWithoutRetrying() async throws {
        let provider = try await NBDProxyProvider(
            parameters: ["socket": "\(directory!)/nobody-listens"], options: BackendOptions())
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await provider.open(ConnectionInfo()) }, code: .ioError)
        XCTAssertTrue(error?.message.contains("nobody-listens") ?? false, "\(String(describing: error))")
    }

    func testParameterErrorsNameTheParameter() async throws {
        let cases: [(ParameterValues, String)] = [
            ([:], "socket="),
            (["socket": "/a", "uri": "nbd://x/"], "only one of"),
            (["socket": "/a", "port": "10"], "port="),
            (["uri": "nbds://localhost/?tls-psk-file=/nonexistent/keys.psk"], "tls-psk"),
            (["socket": "/a", "tls": "maybe"], "tls="),
            (["socket": "/a", "tls-psk": "/nonexistent/keys.psk"], "tls-psk"),
            (["socket": "/a", "tls": "require", "tls-certificates": "/nonexistent"], "tls-certificates"),
            (["socket": "/a", "tls-psk": "/nonexistent/keys.psk", "tls-verify": "perhaps"], "tls-verify="),
            (["uri": "nbds+unix:///?socket=/a", "tls": "off"], "tls=off"),
            (["uri": "http://localhost/"], "uri="),
            (["socket": "/a", "retry": "many"], "retry="),
            (["socket": "/a", "shared": "maybe"], "shared="),
            (["uri": "nbd+unix:///disk?socket=/a", "export": "other"], "export="),
        ]
        for (parameters, expected) in cases {
            do {
                _ = try await NBDProxyProvider(parameters: parameters, options: BackendOptions())
                XCTFail("\(parameters) was accepted")
            } catch {
                XCTAssertTrue(
                    error.message.contains(expected), "\(parameters): \(error.message) should mention \(expected)")
            }
        }
    }

    func testURIsParse() throws {
        XCTAssertEqual(
            try NBDEndpoint(uri: "nbd://example.com:10810/my%20disk"),
            NBDEndpoint(.tcp(host: "example.com", port: "10810"), exportName: "my disk"))
        XCTAssertEqual(
            try NBDEndpoint(uri: "nbd://[::1]/"), NBDEndpoint(.tcp(host: "::1", port: "10809"), exportName: ""))
        XCTAssertEqual(
            try NBDEndpoint(uri: "nbd+unix:///e?socket=/tmp/s"), NBDEndpoint(.unix(path: "/tmp/s"), exportName: "e"))
        XCTAssertThrowsError(try NBDEndpoint(uri: "nbd+unix:///e"))
        XCTAssertThrowsError(try NBDEndpoint(uri: "nbds://localhost/?tls-verify-peer=perhaps"))
        XCTAssertEqual(
            try NBDEndpoint(uri: "nbds+unix://alice@/e?socket=/tmp/s&tls-psk-file=/k.psk&tls-verify-peer=false"),
            NBDEndpoint(
                .unix(path: "/tmp/s"), exportName: "e",
                tls: ClientTLSOptions(mode: .require, pskFile: "/k.psk", username: "alice", verifyPeer: false)))
        XCTAssertEqual(
            try NBDEndpoint(uri: "nbds://h:1/e?tls-certificates=/pki&tls-username=bob").tls,
            ClientTLSOptions(mode: .require, certificatesDirectory: "/pki", username: "bob"))
        XCTAssertNil(try NBDEndpoint(uri: "nbd://h/").tls)
    }
}

/// A counter shared with a task.
private final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}

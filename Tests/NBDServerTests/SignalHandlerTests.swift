import Dispatch
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

/// `SignalHandler` and `NBDServer.shutdownOnSignals(_:)` with real signals sent to this process.
/// SIGUSR1 and SIGUSR2 stand in for SIGTERM, which would end the test process were the handler
/// broken.
final class SignalHandlerTests: ServerTestCase {
    func testARealSignalShutsTheServerDownAndRunReturns() async throws {
        let server = NBDServer(provider: try MemoryBackendProvider(size: 1 << 20))
        let path = try socketPath()
        try server.listen(on: .unix(path: path))
        track(server)
        let signals = server.shutdownOnSignals([SIGUSR2])
        defer { signals.cancel() }
        XCTAssertEqual(kill(getpid(), SIGUSR2), 0)
        try await withBoundedWait("run() to return after SIGUSR2") { await server.run() }
        XCTAssertThrowsError(try TestNBDClient(unixPath: path), "the server stopped listening")
    }

    func testTheHandlerGetsEachSignalsNumberOffTheMainActor() throws {
        let received = LockedValue<[Int32]>([])
        let arrived = DispatchSemaphore(value: 0)
        let handler = SignalHandler([SIGUSR1, SIGUSR2]) { number in
            // Code written in top-level main.swift would be main-actor isolated; this must not be.
            received.withLock { $0.append(number) }
            arrived.signal()
        }
        defer { handler.cancel() }
        XCTAssertEqual(kill(getpid(), SIGUSR1), 0)
        XCTAssertTrue(arrived.waitOrFail("the handler to see SIGUSR1"))
        XCTAssertEqual(kill(getpid(), SIGUSR2), 0)
        XCTAssertTrue(arrived.waitOrFail("the handler to see SIGUSR2"))
        XCTAssertEqual(received.withLock { $0 }, [SIGUSR1, SIGUSR2])
    }

    func testCancelGivesTheSignalBackItsPreviousAction() throws {
        let handler = SignalHandler([SIGUSR1]) { _ in }
        var action = sigaction()
        XCTAssertEqual(sigaction(SIGUSR1, nil, &action), 0)
        let handled = unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self)
        XCTAssertNotEqual(handled, unsafeBitCast(SIG_DFL, to: Int.self), "handled, so the signal does not end the process")
        XCTAssertNotEqual(handled, unsafeBitCast(SIG_IGN, to: Int.self), "handled, not ignored")
        handler.cancel()
        handler.cancel()
        XCTAssertEqual(sigaction(SIGUSR1, nil, &action), 0)
        XCTAssertEqual(unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self), unsafeBitCast(SIG_DFL, to: Int.self))
    }
}

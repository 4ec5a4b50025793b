import Foundation
import NBDBackends
import NBDCore
import NBDFUAFilter
import NBDServer
import NBDStatsFilter
import NBDTestSupport
import XCTest

/// Keeps the README's example compiling and working: the function body below is the README code;
/// the test sends the SIGTERM that stops the server, then checks what the stack did.
final class ReadmeExampleTests: XCTestCase {
    func testReadmeExampleComposesAndServesAStack() async throws {
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID().uuidString).sock").path

        // --- README example starts here ---
        let stats = StatsCollector()
        let multiConn = MultiConn(MultiConnConfiguration(mode: .emulate))
        let export = try ConnectionCacheProvider(size: 1 << 30)  // or your own BackendProvider
            .wrapped { next, _ in StatsFilter(wrapping: next, collector: stats) }
            .wrapped { next, connection in try FUAFilter(wrapping: next, mode: .pass, connection: connection) }
            .wrapped { next, connection in try await multiConn.filter(wrapping: next, for: connection) }

        let server = NBDServer(provider: export)
        let address = try server.listen(on: ListenAddress.unix(path: socket))
        let signals = server.shutdownOnSignals()  // SIGINT or SIGTERM: server.shutdown()
        print("serving on \(address.uri)")  // try: nbdinfo --json 'nbd+unix:///?socket=...'
        let watchdog = try await writeABlockAndStop(export, server)  // (not in the README: see below)
        await server.run()                   // serves until server.shutdown()
        signals.cancel()
        print(stats.report())                // nbdkit's stats report
        // --- README example ends here ---

        watchdog.cancel()
        XCTAssertEqual(address.uri, "nbd+unix:///?socket=\(socket)")
        XCTAssertTrue(stats.report().hasPrefix("total: 2 ops"), stats.report())
    }

    /// Writes and flushes one block through a connection of `export`'s own, then sends this process
    /// SIGTERM, which the README's `shutdownOnSignals()` turns into `server.shutdown()`; `run()`
    /// returning is the test's proof. A broken handler would end the test process: a failure too.
    /// Returns a watchdog that fails the test and stops `server` if the signal did not within
    /// `TestWait.limit`, so that `run()` never hangs the suite; cancel it once `run()` returned.
    private func writeABlockAndStop<Provider: BackendProvider>(_ export: Provider, _ server: NBDServer) async throws
        -> Task<Void, Never>
    {
        let backend = try await export.open(ConnectionInfo())
        XCTAssertTrue(backend.capabilities.canMultiConn, "emulate mode makes the per-connection caches safe")
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { block.deallocate() }
        block.initializeMemory(as: UInt8.self, repeating: 7)
        try await backend.write(UnsafeRawBufferPointer(block), at: 0, flags: [])
        try await backend.flush(flags: [])
        await backend.close()
        let watchdog = Task {
            guard (try? await Task.sleep(for: TestWait.limit)) != nil else { return }
            XCTFail("SIGTERM did not stop the server within \(TestWait.limit)")
            await server.shutdown()
        }
        XCTAssertEqual(kill(getpid(), SIGTERM), 0)
        return watchdog
    }
}

import Foundation
import NBDBackends
import NBDCore
import NBDFUAFilter
import NBDServer
import NBDStatsFilter
import XCTest

/// Keeps the README's example compiling and working: the function body below is the README code,
/// except that the test stops the server instead of running until a signal.
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
        print("serving on \(address.uri)")  // try: nbdinfo --json 'nbd+unix:///?socket=...'
        // await server.run()                // serves until server.shutdown(), e.g. on SIGTERM
        // print(stats.report())             // nbdkit's stats report
        // --- README example ends here ---

        XCTAssertEqual(address.uri, "nbd+unix:///?socket=\(socket)")
        let backend = try await export.open(ConnectionInfo())
        XCTAssertTrue(backend.capabilities.canMultiConn, "emulate mode makes the per-connection caches safe")
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { block.deallocate() }
        block.initializeMemory(as: UInt8.self, repeating: 7)
        try await backend.write(UnsafeRawBufferPointer(block), at: 0, flags: [])
        try await backend.flush(flags: [])
        await backend.close()
        await server.shutdown()
        XCTAssertTrue(stats.report().hasPrefix("total: 2 ops"), stats.report())
    }
}

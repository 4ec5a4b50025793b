import NBDCore
import NBDStatsFilter
import NBDTestSupport
import Synchronization
import XCTest

/// The count filter: bytes of successful requests, summed over connections, reported at shutdown.
final class CountFilterTests: XCTestCase {
    func testCountsBytesOfEveryConnectionAndReportsThemAtShutdown() async throws {
        let lines = Mutex<[String]>([])
        let layer = CountLayer(emit: { line in lines.withLock { $0.append(line) } })
        let backend = TestMemoryBackend(size: 1 << 20)
        let first = try await layer.wrap(AnyBlockBackend(backend), for: ConnectionInfo())
        let second = try await layer.wrap(AnyBlockBackend(backend), for: ConnectionInfo())
        _ = try await first.readBytes(4096, at: 0)
        try await second.writeBytes([UInt8](repeating: 1, count: 512), at: 0)
        try await first.zero(count: 8192, at: 0, flags: [])
        try await second.trim(count: 100, at: 0, flags: [])
        try await second.flush(flags: [])
        backend.failNext(.read, with: NBDError(.ioError, "bad sector"))
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in _ = try await first.readBytes(512, at: 0) }, code: .ioError)
        XCTAssertEqual(layer.counts.read, 4096, "a failed read is not counted")
        await layer.shutdown()
        XCTAssertEqual(lines.withLock { $0 }, ["count bytes: read 4096, written 512, zeroed 8192, trimmed 100"])
    }
}

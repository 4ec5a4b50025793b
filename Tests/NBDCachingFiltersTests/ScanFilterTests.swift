import NBDCore
import NBDCachingFilters
import NBDTestSupport
import XCTest

/// The scan filter: prefetches across the disk, skips ahead of reads, clock and parameters.
final class ScanFilterTests: XCTestCase {
    private func backend(cache: CacheSupport = .native) -> (AnyBlockBackend, OperationLog) {
        let log = OperationLog()
        let memory = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20, cache: cache))
        return (AnyBlockBackend(RecordingFilter(wrapping: memory, log: log, connection: 1)), log)
    }

    func testTheWholeDiskIsPrefetchedInOrderInScanSizePieces() async throws {
        let (below, log) = backend()
        let layer = try ScanLayer(parameters: ["scan-size": "256K"])
        let filter = try await layer.wrap(below, for: ConnectionInfo())
        await waitUntil("the scan reaches the end") { log.count(of: .cache) == 4 }
        XCTAssertEqual(log.all.filter { $0.command == .cache }.map(\.offset), [0, 262144, 524288, 786432])
        XCTAssertEqual(Set(log.all.filter { $0.command == .cache }.map(\.count)), [262144])
        await filter.close()
        await layer.shutdown()
        XCTAssertEqual(log.count(of: .cache), 4, "scan-forever is off")
    }

    func testNothingIsPrefetchedWhenTheLayerBelowCannotCache() async throws {
        let (below, log) = backend(cache: .none)
        let layer = ScanLayer()
        let filter = try await layer.wrap(below, for: ConnectionInfo())
        _ = try await filter.readBytes(512, at: 0)
        await filter.close()
        await layer.shutdown()
        XCTAssertEqual(log.count(of: .cache), 0)
    }

    func testAReadBeyondTheScanMovesItPastTheReadUnlessScanAheadIsOff() async throws {
        for ahead in [true, false] {
            let coordinator = ScanCoordinator(settings: ScanSettings(ahead: ahead, size: 65536))
            let (below, _) = backend(cache: .none)
            let filter = ScanFilter(wrapping: below, coordinator: coordinator, connection: 1)
            _ = try await filter.readBytes(4096, at: 200_000)
            XCTAssertEqual(coordinator.position, ahead ? 262144 : 0, "scan-ahead=\(ahead)")
            await filter.close()
        }
    }

    func testScanClockDecidesWhetherAReconnectResumesOrStartsOver() async throws {
        for clock in [true, false] {
            let coordinator = ScanCoordinator(settings: ScanSettings(clock: clock, size: 65536))
            let (below, _) = backend(cache: .none)
            let first = ScanFilter(wrapping: below, coordinator: coordinator, connection: 1)
            _ = try await first.readBytes(512, at: 100_000)
            await first.close()
            let second = ScanFilter(wrapping: below, coordinator: coordinator, connection: 2)
            XCTAssertEqual(coordinator.position, clock ? 131072 : 0, "scan-clock=\(clock)")
            await second.close()
        }
    }

    func testScanForeverStartsOverAndClosingStopsIt() async throws {
        let (below, log) = backend()
        let layer = try ScanLayer(parameters: ["scan-forever": "true", "scan-size": "512K"])
        let filter = try await layer.wrap(below, for: ConnectionInfo())
        await waitUntil("the scan starts over") { log.count(of: .cache) >= 5 }
        await filter.close()
        let after = log.count(of: .cache)
        await layer.shutdown()
        XCTAssertEqual(log.count(of: .cache), after, "no prefetch after the connection closed")
    }

    func testScanSizeMustBeAPowerOfTwo() {
        for bad in ["3M", "0", "x"] {
            XCTAssertThrowsError(try ScanLayer(parameters: ["scan-size": bad])) { error in
                XCTAssertTrue("\(error)".contains("scan-size=\(bad)"), "\(error)")
            }
        }
        XCTAssertThrowsError(try ScanLayer(parameters: ["scan-ahead": "sometimes"]))
    }
}

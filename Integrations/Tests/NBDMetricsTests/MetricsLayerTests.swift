import CoreMetrics
import IntegrationsTestSupport
import MetricsTestKit
import NBDClient
import NBDCore
import NBDMetrics
import NBDServer
import XCTest

/// `MetricsLayer`: its counters, timers and connection meter match the requests clients sent.
final class MetricsLayerTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUp() async throws {
        directory = try TemporaryDirectory()
    }

    override func tearDown() async throws {
        directory.remove()
    }

    private let exportDimension = [("export", "disk0")]

    private func dimensions(_ operation: String) -> [(String, String)] {
        exportDimension + [("operation", operation)]
    }

    func testCountersAndTimersMatchTheRequestsSent() async throws {
        let metrics = TestMetrics()
        let state = ExportState(size: 1 << 20)
        let export = FilterStack(
            [MetricsLayer(dimensions: exportDimension, factory: metrics)], over: GatedMemoryProvider(state: state))
        let server = NBDServer(provider: export)
        let path = directory.socket()
        try server.listen(on: .unix(path: path))

        let first = try await connect(path)
        let second = try await connect(path)
        try await withBoundedWait("the requests to be answered") {
            for index in 0..<5 {
                try await first.write([UInt8](repeating: 7, count: 1024), at: UInt64(index) * 1024)
            }
            for index in 0..<3 {
                _ = try await second.read(count: 512, at: UInt64(index) * 512)
            }
            try await second.flush()
            do {
                try await first.trim(count: 4096, at: 0)
                XCTFail("the test export fails every trim")
            } catch {
                XCTAssertEqual((error as? NBDError)?.code, .ioError)
            }
        }
        XCTAssertEqual(try metrics.expectMeter("nbd_connections", exportDimension).lastValue, 2)

        await first.disconnect()
        await second.disconnect()
        try await withBoundedWait("the server to shut down") { await server.shutdown() }

        func requests(_ operation: String) throws -> Int64 {
            try metrics.expectCounter("nbd_requests_total", dimensions(operation)).totalValue
        }
        func bytes(_ operation: String) throws -> Int64 {
            try metrics.expectCounter("nbd_request_bytes_total", dimensions(operation)).totalValue
        }
        XCTAssertEqual(try requests("write"), 5)
        XCTAssertEqual(try bytes("write"), 5 * 1024)
        XCTAssertEqual(try requests("read"), 3)
        XCTAssertEqual(try bytes("read"), 3 * 512)
        XCTAssertEqual(try requests("flush"), 1)
        XCTAssertEqual(try requests("trim"), 1, "a failed request is counted as a request")
        XCTAssertEqual(try bytes("trim"), 0, "but not its bytes")
        XCTAssertEqual(try requests("zero"), 0)
        XCTAssertEqual(
            try metrics.expectCounter("nbd_request_errors_total", dimensions("trim") + [("error", "EIO")]).totalValue, 1
        )
        XCTAssertEqual(metrics.counters(label: "nbd_request_errors_total").count, 1, "only the trim failed")

        XCTAssertEqual(try metrics.expectTimer("nbd_request_duration_seconds", dimensions("write")).values.count, 5)
        XCTAssertEqual(try metrics.expectTimer("nbd_request_duration_seconds", dimensions("read")).values.count, 3)
        XCTAssertTrue(
            try metrics.expectTimer("nbd_request_duration_seconds", dimensions("read")).values.allSatisfy { $0 >= 0 })
        XCTAssertEqual(try metrics.expectTimer("nbd_request_duration_seconds", dimensions("trim")).values.count, 0)

        XCTAssertEqual(try metrics.expectMeter("nbd_connections", exportDimension).lastValue, 0, "both closed")
        XCTAssertEqual(try metrics.expectCounter("nbd_connections_total", exportDimension).totalValue, 2)
        // The data went through unchanged.
        XCTAssertEqual(state.bytes(at: 0, count: 5 * 1024), [UInt8](repeating: 7, count: 5 * 1024))
    }

    func testEveryMetricCarriesTheLayersDimensions() async throws {
        let metrics = TestMetrics()
        let export = FilterStack(
            [MetricsLayer(dimensions: [("export", "a"), ("tenant", "t1")], factory: metrics)],
            over: GatedMemoryProvider(state: ExportState(size: 4096)))
        let server = NBDServer(provider: export)
        let path = directory.socket()
        try server.listen(on: .unix(path: path))
        let connection = try await connect(path)
        _ = try await withBoundedWait("the read to be answered") { try await connection.read(count: 4096, at: 0) }
        await connection.disconnect()
        try await withBoundedWait("the server to shut down") { await server.shutdown() }

        let all: [[(String, String)]] =
            metrics.counters.map(\.dimensions) + metrics.timers.map(\.dimensions) + metrics.meters.map(\.dimensions)
        XCTAssertFalse(all.isEmpty)
        for dimensions in all {
            XCTAssertTrue(
                dimensions.contains { $0 == ("export", "a") } && dimensions.contains { $0 == ("tenant", "t1") })
        }
    }
}

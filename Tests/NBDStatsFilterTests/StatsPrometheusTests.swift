import Foundation
import NBDCore
import NBDStatsFilter
import NBDTestSupport
import Synchronization
import XCTest

/// `statsformat=prometheus`: the exposition text, per-export series, and the atomic rewrites.
final class StatsPrometheusTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("stats-prom-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    func testSeriesPerExportAndOperationWithExactCountsBytesAndErrors() async throws {
        let clock = SteppingClock(step: 30_000)  // every request takes exactly 30 us
        let collector = StatsCollector(clock: clock.clock)
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20))
        let a = StatsFilter(wrapping: backend, collector: collector, exportName: "disk \"a\"\\\n")
        let b = StatsFilter(wrapping: backend, collector: collector, exportName: "")
        try await a.writeBytes([UInt8](repeating: 1, count: 4096), at: 0)
        _ = try await a.readBytes(512, at: 0)
        _ = try await b.readBytes(4096, at: 0)
        _ = try await b.readBytes(4096, at: 4096)
        backend.failNext(.read, with: NBDError(.invalidArgument, "injected"))
        do {
            _ = try await b.readBytes(4096, at: 0)
            XCTFail("the injected failure must reach the client")
        } catch {}
        await a.close()

        let text = collector.prometheus()
        let all = Set(lines(text))
        let quotedA = #"export="disk \"a\"\\\n""#
        for expected in [
            #"nbd_requests_total{export="",operation="read"} 2"#,
            #"nbd_request_bytes_total{export="",operation="read"} 8192"#,
            #"nbd_requests_total{export="",operation="write"} 0"#,
            "nbd_requests_total{\(quotedA),operation=\"write\"} 1",
            "nbd_request_bytes_total{\(quotedA),operation=\"read\"} 512",
            #"nbd_request_errors_total{export="",operation="read",error="EINVAL"} 1"#,
            #"nbd_connections_open{export=""} 1"#,
            "nbd_connections_open{\(quotedA)} 0",
            #"nbd_request_duration_seconds_bucket{export="",operation="read",le="2.5e-05"} 0"#,
            #"nbd_request_duration_seconds_bucket{export="",operation="read",le="5e-05"} 2"#,
            #"nbd_request_duration_seconds_bucket{export="",operation="read",le="+Inf"} 2"#,
            #"nbd_request_duration_seconds_sum{export="",operation="read"} 0.00006"#,
            #"nbd_request_duration_seconds_count{export="",operation="read"} 2"#,
        ] {
            XCTAssertTrue(all.contains(expected), "missing line: \(expected)\n\(text)")
        }
        // Every family is declared once, before its samples, and exports come in name order.
        XCTAssertEqual(lines(text).filter { $0.hasPrefix("# TYPE nbd_requests_total counter") }.count, 1)
        let firstSample = try XCTUnwrap(lines(text).firstIndex { $0.hasPrefix("nbd_requests_total{") })
        let type = try XCTUnwrap(lines(text).firstIndex { $0 == "# TYPE nbd_requests_total counter" })
        XCTAssertLessThan(type, firstSample)
        XCTAssertTrue(lines(text)[firstSample].hasPrefix(#"nbd_requests_total{export="","#))
        await b.close()
    }

    func testDurationBucketsAreCumulativeAndNeverUnderstateALatency() async throws {
        let clock = SteppingClock(step: 0)
        let collector = StatsCollector(clock: clock.clock)
        let latencies = LockedValue<[UInt64]>([95_000, 100_000, 2_000_000_000])
        let slow = ClockAdvancingFilter(next: TestMemoryBackend(capabilities: Capabilities(size: 1 << 20))) {
            clock.advance(by: latencies.withLock { $0.removeFirst() })
        }
        let filter = StatsFilter(wrapping: slow, collector: collector)
        // Latencies of 95 us, 100 us and 2 s: the filter below advances the clock inside each read.
        for _ in 0..<3 { _ = try await filter.readBytes(512, at: 0) }
        let buckets = lines(collector.prometheus()).filter {
            $0.hasPrefix(#"nbd_request_duration_seconds_bucket{export="",operation="read""#)
        }
        let counts = buckets.map { UInt64($0.split(separator: " ").last!)! }
        XCTAssertEqual(counts, counts.sorted(), "cumulative buckets never decrease")
        func count(le: String) -> UInt64? {
            buckets.first { $0.contains("le=\"\(le)\"") }.map { UInt64($0.split(separator: " ").last!)! }
        }
        XCTAssertEqual(count(le: "5e-05"), 0)
        // 95 us lies in the histogram bucket 90.1-98.3 us, counted at 100 us; 100 us lies in 98.3-106.5
        // us, which ends above 100 us, so it is counted at 250 us: overstated, never understated.
        XCTAssertEqual(count(le: "0.0001"), 1)
        XCTAssertEqual(count(le: "0.00025"), 2)
        XCTAssertEqual(count(le: "2.5"), 3)
        XCTAssertEqual(count(le: "+Inf"), 3)
        XCTAssertTrue(
            lines(collector.prometheus()).contains(#"nbd_request_duration_seconds_sum{export="",operation="read"} 2.000195"#))
        await filter.close()
    }

    func testTheFileIsWrittenAtStartAndReplacedAtShutdownLeavingNoTemporaryFile() async throws {
        let layer = try StatsLayer(parameters: ["statsfile": path("nbd.prom"), "statsformat": "prometheus"])
        XCTAssertEqual(layer.format, .prometheus)
        XCTAssertNil(layer.interval)
        let before = try String(contentsOfFile: path("nbd.prom"), encoding: .utf8)
        XCTAssertTrue(before.contains("# TYPE nbd_requests_total counter"))
        XCTAssertFalse(before.contains("nbd_requests_total{"), "no connection yet, so no series")

        let stack = try await layer.wrap(
            AnyBlockBackend(TestMemoryBackend(capabilities: Capabilities(size: 1 << 20))),
            for: ConnectionInfo(exportName: "vm1"))
        _ = try await stack.readBytes(4096, at: 0)
        await stack.close()
        await layer.shutdown()
        let after = try String(contentsOfFile: path("nbd.prom"), encoding: .utf8)
        XCTAssertTrue(after.contains(#"nbd_requests_total{export="vm1",operation="read"} 1"#), after)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["nbd.prom"])
    }

    func testStatsintervalRewritesTheFileWhileServing() async throws {
        let (writes, continuation) = AsyncStream.makeStream(of: Result<Void, NBDError>.self)
        let layer = try StatsLayer(
            collector: StatsCollector(), replacing: path("nbd.prom"), format: .prometheus, every: .milliseconds(5),
            afterWrite: { continuation.yield($0) })
        let stack = try await layer.wrap(
            AnyBlockBackend(TestMemoryBackend(capabilities: Capabilities(size: 1 << 20))), for: ConnectionInfo())
        _ = try await stack.readBytes(4096, at: 0)
        // A write that began before the read finished may not show it; the one after it must.
        let file = path("nbd.prom")
        let seen = try await withBoundedWait("a periodic write that shows the read") {
            var iterator = writes.makeAsyncIterator()
            var completed = 0
            while let outcome = await iterator.next() {
                try outcome.get()
                completed += 1
                let text = try String(contentsOfFile: file, encoding: .utf8)
                if completed >= 2 { return text }
            }
            return ""
        }
        XCTAssertTrue(seen.contains(#"nbd_requests_total{export="",operation="read"} 1"#), seen)
        XCTAssertTrue(seen.contains(#"nbd_connections_open{export=""} 1"#), seen)
        await stack.close()
        await layer.shutdown()
        continuation.finish()
        let final = try String(contentsOfFile: file, encoding: .utf8)
        XCTAssertTrue(final.contains(#"nbd_connections_open{export=""} 0"#), final)
    }

    func testIntervalRewritesTheTextReportToo() async throws {
        let layer = try StatsLayer(parameters: ["statsfile": path("s.txt"), "statsinterval": "500ms"])
        XCTAssertEqual(layer.format, .text)
        XCTAssertEqual(layer.interval, .milliseconds(500))
        XCTAssertNil(layer.file, "rewritten atomically, not through the nbdkit-style open file")
        XCTAssertTrue(try String(contentsOfFile: path("s.txt"), encoding: .utf8).contains("total:"))
        await layer.shutdown()
    }

    func testJSONFormat() async throws {
        let layer = try StatsLayer(parameters: ["statsfile": path("s.json"), "statsformat": "json"])
        await layer.shutdown()
        let text = try String(contentsOfFile: path("s.json"), encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("{\"elapsed_ns\":"), text)
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(text.utf8)))
    }

    func testBadParametersAreRefusedNamingTheParameter() async {
        let cases: [([String: String], String)] = [
            (["statsformat": "xml"], "statsformat=xml: expected text, json or prometheus"),
            (["statsinterval": "soon"], "statsinterval=soon: expected a duration such as 2, 0.5, 1.5s or 100ms"),
            (["statsinterval": "-1"], "statsinterval=-1: expected a duration such as 2, 0.5, 1.5s or 100ms"),
            (["statsinterval": "86401"], "statsinterval=86401: expected from 1ms to one day (86400), or 0 for only at shutdown"),
            (["statsinterval": "100us"], "statsinterval=100us: expected from 1ms to one day (86400), or 0 for only at shutdown"),
            (
                ["statsformat": "prometheus", "statsappend": "true"],
                "statsappend=true cannot be used with statsformat=prometheus or statsinterval: the statsfile is replaced whole each time it is written"
            ),
        ]
        for (extra, message) in cases {
            var parameters = ["statsfile": path("s.prom")]
            parameters.merge(extra) { $1 }
            let error = await XCTAssertThrowsNBDError(
                { () throws(NBDError) in _ = try StatsLayer(parameters: ParameterValues(parameters.sorted { $0.key < $1.key }.map { ParameterValues.Entry(key: $0.key, value: $0.value) })) },
                code: .invalidArgument)
            XCTAssertEqual(error?.message, message)
        }
    }

    func testAnUnwritableDirectoryFailsAtStart() async {
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                _ = try StatsLayer(parameters: ["statsfile": self.path("missing/nbd.prom"), "statsformat": "prometheus"])
            }, code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("missing/.nbd.prom.") ?? false, error?.message ?? "")
    }

    func testZeroIntervalMeansOnlyAtShutdown() throws {
        let layer = try StatsLayer(parameters: ["statsfile": path("s.txt"), "statsinterval": "0"])
        XCTAssertNil(layer.interval)
        XCTAssertNotNil(layer.file)
    }
}

/// Advances a test clock inside each read, so the stats filter above times a chosen latency.
struct ClockAdvancingFilter<Next: BlockBackend>: Filter {
    let next: Next
    let advance: @Sendable () -> Void

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        advance()
        try await next.read(into: buffer, at: offset, flags: flags)
    }
}

/// Clients choose export names; the collector must not grow without bound with them.
final class StatsExportNameBoundTests: XCTestCase {
    func testNamesBeyondTheLimitAreCountedTogether() async throws {
        let collector = StatsCollector()
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20))
        for i in 0..<(StatsCollector.maximumExportNames + 10) {
            let filter = StatsFilter(wrapping: backend, collector: collector, exportName: "name\(i)")
            _ = try await filter.readBytes(512, at: 0)
            await filter.close()
        }
        // A name counted before stays its own even when the limit is reached.
        let again = StatsFilter(wrapping: backend, collector: collector, exportName: "name0")
        _ = try await again.readBytes(512, at: 0)
        await again.close()

        let exports = collector.exportSnapshots()
        XCTAssertEqual(exports.count, StatsCollector.maximumExportNames + 1)
        XCTAssertEqual(exports.first { $0.exportName == "name0" }?.snapshot[.read].count, 2)
        XCTAssertEqual(exports.first { $0.exportName == StatsCollector.otherExports }?.snapshot[.read].count, 10)
        XCTAssertEqual(collector.snapshot()[.read].count, UInt64(StatsCollector.maximumExportNames + 11))
    }
}

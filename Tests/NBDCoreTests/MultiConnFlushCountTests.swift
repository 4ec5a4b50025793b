import NBDBackends
import NBDCachingFilters
import NBDCore
import NBDTestSupport
import XCTest

/// The flush counts of upstream test-multi-conn.sh (G) and of the memory-plugin trace (reference 1.9),
/// counted by a recording layer below the multi-conn filter.
final class MultiConnFlushCountTests: XCTestCase {
    private typealias Script = @Sendable (MultiConnHarness) async throws -> Void

    private static let scripts: [(handles: Int, run: Script)] = [
        // S1: h0.flush(); h0.pread(1,0); h0.flush()
        (3, { h in
            try await h[0].flush(flags: [])
            _ = try await h[0].readBytes(1, at: 0)
            try await h[0].flush(flags: [])
        }),
        // S2: h0.pread; h1.zero(1,0); h3.flush; h2.zero(1,1); h0.pread; h3.flush; h3.flush
        (4, { h in
            _ = try await h[0].readBytes(1, at: 0)
            try await h[1].zero(count: 1, at: 0, flags: [])
            try await h[3].flush(flags: [])
            try await h[2].zero(count: 1, at: 1, flags: [])
            _ = try await h[0].readBytes(1, at: 0)
            try await h[3].flush(flags: [])
            try await h[3].flush(flags: [])
        }),
        // S3: h0.pread; h1.trim(1,0); h0.flush; h1.flush; h0.pread; h2.trim(1,1); h0.flush; h2.flush
        (3, { h in
            _ = try await h[0].readBytes(1, at: 0)
            try await h[1].trim(count: 1, at: 0, flags: [])
            try await h[0].flush(flags: [])
            try await h[1].flush(flags: [])
            _ = try await h[0].readBytes(1, at: 0)
            try await h[2].trim(count: 1, at: 1, flags: [])
            try await h[0].flush(flags: [])
            try await h[2].flush(flags: [])
        }),
    ]

    private func flushCounts(
        _ tracking: MultiConnConfiguration.DirtyTracking, _ mode: MultiConnConfiguration.Mode, sharedCache: Bool,
        cacheFilter: Bool = false
    ) async throws -> [Int] {
        var counts: [Int] = []
        for script in Self.scripts {
            let log = OperationLog()
            var layers: [any FilterLayer] = [multiConn(mode, tracking), RecordingLayer(log: log)]
            if sharedCache { layers.append(SharedWritebackCacheLayer()) }
            if cacheFilter { layers.append(try CacheLayer(configuration: CacheConfiguration(minimumBlockSize: 4096))) }
            var h = try MultiConnHarness(layers: layers, log: log)
            try await h.connect(script.handles)
            try await script.run(h)
            counts.append(log.count(of: .flush))
            await h.closeAll()
        }
        return counts
    }

    /// Every cell of the upstream table (S1/S2/S3). nbdkit's "–" (no flush line) is 0 here.
    func testFlushCountsMatchUpstreamTable() async throws {
        let expected: [(MultiConnConfiguration.DirtyTracking, MultiConnConfiguration.Mode, Bool, [Int])] = [
            (.off, .emulate, false, [6, 12, 12]),
            (.off, .emulate, true, [6, 12, 12]),
            (.off, .plugin, false, [2, 3, 4]),
            (.off, .plugin, true, [2, 3, 4]),
            (.connection, .emulate, false, [0, 4, 4]),
            (.connection, .emulate, true, [0, 4, 4]),
            (.connection, .plugin, true, [0, 2, 2]),
            (.fast, .emulate, false, [0, 8, 6]),
            (.fast, .emulate, true, [0, 8, 6]),
            (.fast, .plugin, false, [0, 2, 2]),
            (.fast, .plugin, true, [0, 2, 2]),
        ]
        for (tracking, mode, cache, counts) in expected {
            let measured = try await flushCounts(tracking, mode, sharedCache: cache)
            XCTAssertEqual(measured, counts, "track-dirty=\(tracking) mode=\(mode)\(cache ? " + cache" : "")")
        }
    }

    /// The same table with the real cache filter (`--filter=multi-conn --filter=stats --filter=cache`,
    /// counted between multi-conn and cache as nbdkit's stats filter counts): the "+cache" columns.
    func testFlushCountsOverTheCacheFilterMatchUpstreamTable() async throws {
        let expected: [(MultiConnConfiguration.DirtyTracking, MultiConnConfiguration.Mode, [Int])] = [
            (.off, .emulate, [6, 12, 12]), (.off, .plugin, [2, 3, 4]),
            (.connection, .emulate, [0, 4, 4]), (.connection, .plugin, [0, 2, 2]),
            (.fast, .emulate, [0, 8, 6]), (.fast, .plugin, [0, 2, 2]),
        ]
        for (tracking, mode, counts) in expected {
            let measured = try await flushCounts(tracking, mode, sharedCache: false, cacheFilter: true)
            XCTAssertEqual(measured, counts, "track-dirty=\(tracking) mode=\(mode) + cache filter")
        }
    }

    /// The one cell where this library follows nbdkit's documentation instead of its code: connection
    /// tracking in plugin mode over a layer without multi-conn. nbdkit passes every flush down once
    /// anything was written (3/4); here a flush is skipped on a connection that neither wrote nor
    /// read stale data (0/3). See Documentation/MultiConn.md.
    func testConnectionTrackingInPluginModeSkipsFlushesOnCleanConnections() async throws {
        let measured = try await flushCounts(.connection, .plugin, sharedCache: false)
        XCTAssertEqual(measured, [0, 0, 3])
    }

    /// Reference 1.9: a backend that has multi-conn and flush (nbdkit's memory plugin), two
    /// connections A and B, counted below the filter.
    func testFlushCountsOverAMultiConnBackend() async throws {
        let expected: [(MultiConnConfiguration.DirtyTracking, MultiConnConfiguration.Mode, Int)] = [
            (.connection, .auto, 1), (.connection, .emulate, 2), (.connection, .disable, 1),
            (.fast, .auto, 1), (.fast, .emulate, 4), (.fast, .disable, 1),
            (.off, .auto, 6), (.off, .emulate, 14), (.off, .disable, 6),
        ]
        for (tracking, mode, flushes) in expected {
            let log = OperationLog()
            let stack = FilterStack(
                [multiConn(mode, tracking), RecordingLayer(log: log)], over: SharedMemoryTestProvider(size: 1 << 20))
            let a = try await stack.open(ConnectionInfo())
            let b = try await stack.open(ConnectionInfo())
            let block = [UInt8](repeating: 7, count: 512)
            try await b.flush(flags: [])
            try await b.writeBytes(block, at: 0)
            try await b.flush(flags: [])
            try await b.flush(flags: [])
            try await a.flush(flags: [])
            _ = try await b.readBytes(512, at: 0)
            try await a.flush(flags: [])
            try await b.writeBytes(block, at: 0, flags: .fua)
            try await a.flush(flags: [])
            XCTAssertEqual(log.count(of: .flush), flushes, "track-dirty=\(tracking) mode=\(mode)")
            XCTAssertEqual(log.count(of: .write), 2)
            await a.close()
            await b.close()
        }
    }
}

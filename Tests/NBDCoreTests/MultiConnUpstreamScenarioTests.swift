import NBDBackends
import NBDCachingFilters
import NBDCore
import NBDTestSupport
import XCTest

/// The scenarios of nbdkit's tests/test-multi-conn.sh and test-multi-conn-name.sh (reference 2.1 A–F
/// and 2.2), run in process over the connection-cache backend.
final class MultiConnUpstreamScenarioTests: XCTestCase {
    /// (A) Without multi-conn, each connection caches independently; flushes only publish the
    /// flushing connection's writes and refresh its own view.
    func testCachingWithoutConsistencyWithNoFilterAndInPluginMode() async throws {
        for layers: [any FilterLayer] in [[], [multiConn(.plugin)]] {
            var h = try MultiConnHarness(layers: layers)
            try await h.connect(4)
            XCTAssertFalse(h[0].capabilities.canMultiConn)
            let p0 = try await h[0].peek()
            XCTAssertEqual(p0, "Init")
            try await h[1].writeString("next ", at: 0)
            var seen = [try await h[0].peek(), try await h[1].peek(), try await h[2].peek()]
            XCTAssertEqual(seen, ["Init", "next", "Init"], "layers: \(layers.map(\.name))")
            try await h[2].flush(flags: [])
            seen = [try await h[0].peek(), try await h[1].peek(), try await h[2].peek()]
            XCTAssertEqual(seen, ["Init", "next", "Init"])
            try await h[1].flush(flags: [])
            seen = [try await h[0].peek(), try await h[1].peek(), try await h[2].peek(), try await h[3].peek()]
            XCTAssertEqual(seen, ["Init", "next", "Init", "next"])
            try await h[0].flush(flags: [])
            try await h[2].flush(flags: [])
            seen = [try await h[0].peek(), try await h[2].peek()]
            XCTAssertEqual(seen, ["next", "next"])
            await h.closeAll()
        }
    }

    /// (B) A FUA write in non-strict mode flushes everything pending on that connection.
    func testNonStrictFUAFlushesTheWholeConnection() async throws {
        for layers: [any FilterLayer] in [[], [multiConn(.plugin)]] {
            var h = try MultiConnHarness(layers: layers)
            try await h.connect(3)
            XCTAssertFalse(h[0].capabilities.canMultiConn)
            try await h[0].writeString("hello ", at: 0)
            try await h[0].writeString("world.", at: 6, flags: .fua)
            let seen = try await h[1].readString(12, at: 0)
            XCTAssertEqual(seen, "hello world.")
            await h.closeAll()
        }
    }

    /// (C) With strict FUA only the FUA range is written through, and a late flush of an older cached
    /// write undoes a newer FUA write from another connection (the misuse multi-conn prevents).
    func testStrictFUAWritesThroughOnlyTheRequestRange() async throws {
        for layers: [any FilterLayer] in [[], [multiConn(.plugin)]] {
            var h = try MultiConnHarness(layers: layers, strictFUA: true)
            try await h.connect(3)
            XCTAssertFalse(h[0].capabilities.canMultiConn)
            try await h[0].writeString("hello ", at: 0)
            try await h[0].writeString("world.", at: 6, flags: .fua)
            var seen = try await h[1].readString(12, at: 0)
            XCTAssertEqual(seen, "Initiaworld.")
            try await h[1].writeString("H", at: 0, flags: .fua)
            try await h[2].flush(flags: [])
            seen = try await h[2].readString(12, at: 0)
            XCTAssertEqual(seen, "Hnitiaworld.")
            try await h[0].flush(flags: [])
            try await h[2].flush(flags: [])
            seen = try await h[2].readString(12, at: 0)
            XCTAssertEqual(seen, "hello world.")
            try await h[1].flush(flags: [])
            try await h[2].flush(flags: [])
            seen = try await h[2].readString(12, at: 0)
            XCTAssertEqual(seen, "Hello world.")
            await h.closeAll()
        }
    }

    /// (D) The multi-conn guarantee: a FUA write or a flush on any connection is visible on all.
    func testMultiConnGuaranteeHoldsInEmulateModeAndOverASharedCache() async throws {
        let setups: [(String, [any FilterLayer], Bool)] = [
            ("auto (emulate)", [multiConn()], false),
            ("auto (emulate), strictfua", [multiConn()], true),
            ("plugin over a shared writeback cache", [multiConn(.plugin), SharedWritebackCacheLayer()], false),
            ("plugin over the cache filter", [multiConn(.plugin), try MultiConnModelCheckTests.cacheLayer(.writeback)], false),
            ("emulate over the cache filter", [multiConn(.emulate), try MultiConnModelCheckTests.cacheLayer(.writeback)], false),
        ]
        for (name, layers, strict) in setups {
            var h = try MultiConnHarness(layers: layers, strictFUA: strict)
            try await h.connect(3)
            XCTAssertTrue(h[0].capabilities.canMultiConn, name)
            try await h[0].cache(count: 12, at: 0, flags: [])
            try await h[1].writeString("Hello ", at: 0, flags: .fua)
            var seen = try await h[0].readString(12, at: 0)
            XCTAssertEqual(seen, "Hello l cont", name)
            try await h[1].writeString("world.", at: 6)
            try await h[2].flush(flags: [])
            seen = try await h[0].readString(12, at: 0)
            XCTAssertEqual(seen, "Hello world.", name)
            await h.closeAll()
        }
    }

    /// (E) Unsafe mode advertises multi-conn without providing it.
    func testUnsafeModeAdvertisesMultiConnWithoutProvidingIt() async throws {
        var h = try MultiConnHarness(layers: [multiConn(.unsafe)])
        try await h.connect(3)
        XCTAssertTrue(h[0].capabilities.canMultiConn)
        try await h[0].cache(count: 12, at: 0, flags: [])
        try await h[1].writeString("Hello ", at: 0, flags: .fua)
        var seen = try await h[0].readString(12, at: 0)
        XCTAssertEqual(seen, "Initial cont")
        try await h[1].writeString("world.", at: 6)
        try await h[2].flush(flags: [])
        seen = try await h[0].readString(12, at: 0)
        XCTAssertEqual(seen, "Initial cont")
        await h.closeAll()
    }

    /// (F) When the server takes one connection at a time, auto mode disables multi-conn even over a
    /// layer that has it.
    func testSerializedConnectionsDisableMultiConnInAutoMode() async throws {
        for cache in [SharedWritebackCacheLayer() as any FilterLayer, try MultiConnModelCheckTests.cacheLayer(.writeback)] {
            var h = try MultiConnHarness(layers: [multiConn(serialized: true), cache])
            try await h.connect(1)
            XCTAssertFalse(h[0].capabilities.canMultiConn)
            await h.closeAll()
        }
    }

    /// 2.2: one group for all export names, or one group per name with multi-conn-exportname.
    func testGroupingByExportName() async throws {
        for (byName, expected) in [(false, ["A", "B"]), (true, ["I", "B"])] {
            var h = try MultiConnHarness(layers: [multiConn(byName: byName)])
            try await h.connect(2, exportName: "a")
            try await h.connect(2, exportName: "b")
            let (a1, a2, b1, b2) = (h[0], h[1], h[2], h[3])
            _ = try await a1.readBytes(1, at: 0)
            try await a2.writeString("A", at: 0)
            _ = try await b1.readBytes(1, at: 0)
            try await b2.writeString("B", at: 0, flags: .fua)
            let seen = [try await a1.readString(1, at: 0), try await b1.readString(1, at: 0)]
            XCTAssertEqual(seen, expected, "multi-conn-exportname=\(byName)")
            await h.closeAll()
        }
    }

    /// 1.9: what reaches the backend in emulate mode: the FUA becomes a plain write and the group is
    /// flushed (only the connections that need it with connection tracking).
    func testEmulateModeTurnsFUAIntoAGroupFlush() async throws {
        for tracking in MultiConnConfiguration.DirtyTracking.allCases {
            let log = OperationLog()
            var h = try MultiConnHarness(layers: [multiConn(.emulate, tracking), RecordingLayer(log: log)], log: log)
            try await h.connect(3)
            _ = try await h[0].peek()
            log.reset()
            try await h[1].writeString("X", at: 0, flags: .fua)
            var seen = try await h[0].peek()
            XCTAssertEqual(seen, "Xnit")
            let writes = log.all.filter { $0.command == .write }
            XCTAssertEqual(writes.count, 1)
            XCTAssertFalse(writes[0].flags.contains(.fua), "FUA must be replaced by a group flush")
            let flushed = Set(log.all.filter { $0.command == .flush }.map(\.connection))
            let connectionIDs = try await connectionIDs(of: h)
            switch tracking {
            case .connection:
                XCTAssertEqual(flushed, [connectionIDs[0], connectionIDs[1]])
            case .fast, .off:
                XCTAssertEqual(flushed, Set(connectionIDs))
            }
            try await h[2].writeString("Y", at: 1)
            try await h[2].flush(flags: [])
            seen = try await h[0].peek()
            XCTAssertEqual(seen, "XYit")
            await h.closeAll()
        }
    }

    /// Connection ids in handle order, learned from the log of one read per handle.
    private func connectionIDs(of h: MultiConnHarness) async throws -> [UInt64] {
        var ids: [UInt64] = []
        for handle in h.handles {
            h.log.reset()
            try await handle.cache(count: 1, at: 0, flags: [])
            ids.append(h.log.all.last!.connection)
        }
        h.log.reset()
        return ids
    }
}

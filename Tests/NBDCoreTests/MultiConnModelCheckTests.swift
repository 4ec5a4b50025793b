import NBDBackends
import NBDCachingFilters
import NBDCore
import NBDTestSupport
import XCTest

/// A randomized model check of the multi-conn guarantee: several connections make concurrent
/// writes, FUA writes and flushes; after each flush or FUA reply, every connection must read what
/// the NBD specification promises (every write completed before the flush was sent, and every FUA
/// write, is visible everywhere). The check must find violations when multi-conn is disabled over a
/// backend with per-connection caches, or it would prove nothing.
final class MultiConnModelCheckTests: XCTestCase {
    struct Write: Sendable {
        var slot: Int
        var connection: Int
        var value: UInt64
        var fua: Bool
    }

    static let slots = 16
    static let connections = 4

    /// Runs `rounds` rounds and returns the number of reads that broke the guarantee.
    ///
    /// With `filler` bytes, the export has that much more space after the slots, and every round
    /// one connection reads all of it (so a cache with a size limit over it evicts the slots' blocks).
    /// With `consistentBelow`, the backend is one shared memory image (multi-conn) instead of the
    /// backend with a private cache per connection.
    func violations(
        layers: [any FilterLayer], strictFUA: Bool, seed: UInt64, rounds: Int = 120, filler: Int = 0,
        consistentBelow: Bool = false
    ) async throws -> Int {
        let size = UInt64(Self.slots * 8 + filler)
        var handles: [AnyBlockBackend] = []
        if consistentBelow {
            let stack = FilterStack(layers, over: SharedMemoryTestProvider(size: size))
            for _ in 0..<Self.connections { handles.append(try await stack.open(ConnectionInfo())) }
        } else {
            let stack = FilterStack(layers, over: try ConnectionCacheProvider(size: size, strictFUA: strictFUA))
            for _ in 0..<Self.connections { handles.append(try await stack.open(ConnectionInfo())) }
        }

        var random = SeededGenerator(seed: seed)
        // The latest value of each slot, and whether the specification already guarantees it.
        var latest = [(value: UInt64, covered: Bool)](repeating: (0, true), count: Self.slots)
        var broken = 0

        func perform(_ writes: [Write], flushes: [Int]) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for write in writes {
                    let handle = handles[write.connection]
                    group.addTask {
                        var bytes = [UInt8](repeating: 0, count: 8)
                        withUnsafeBytes(of: write.value.littleEndian) { bytes = Array($0) }
                        try await handle.writeBytes(bytes, at: UInt64(write.slot * 8), flags: write.fua ? .fua : [])
                    }
                }
                for connection in flushes {
                    let handle = handles[connection]
                    group.addTask { try await handle.flush(flags: []) }
                }
                try await group.waitForAll()
            }
        }

        // Slots only get a new value once their previous one is guaranteed: two connections' cached
        // writes to one block with no flush between them may reach storage in either order, with
        // multi-conn as without (the specification orders writes only through flushes).
        func randomWrites(_ count: Int, avoiding used: Set<Int>) -> [Write] {
            var free = (0..<Self.slots).filter { !used.contains($0) && latest[$0].covered }
            free.shuffle(using: &random)
            return free.prefix(count).map { slot in
                Write(
                    slot: slot, connection: Int.random(in: 0..<Self.connections, using: &random),
                    value: random.next(), fua: Int.random(in: 0..<10, using: &random) < 3)
            }
        }

        for _ in 0..<rounds {
            // Phase 1: concurrent writes that all complete before any flush is sent.
            let first = randomWrites(Int.random(in: 1...4, using: &random), avoiding: [])
            try await perform(first, flushes: [])
            for write in first { latest[write.slot] = (write.value, write.fua) }
            // Every write completed so far is covered by the flushes of phase 2.
            let completed = (0..<Self.slots).filter { !latest[$0].covered }
            // Phase 2: flushes on random connections, concurrent with more writes they need not cover.
            let flushes = (0..<Int.random(in: 1...3, using: &random)).map { _ in
                Int.random(in: 0..<Self.connections, using: &random)
            }
            if filler > 0 {
                let reader = handles[Int.random(in: 0..<Self.connections, using: &random)]
                for offset in stride(from: Self.slots * 8, to: Self.slots * 8 + filler, by: 65536) {
                    _ = try await reader.readBytes(min(65536, Self.slots * 8 + filler - offset), at: UInt64(offset))
                }
            }
            let second = randomWrites(Int.random(in: 0...2, using: &random), avoiding: Set(first.map(\.slot)))
            try await perform(second, flushes: flushes)
            for slot in completed { latest[slot].covered = true }
            for write in second { latest[write.slot] = (write.value, write.fua) }
            // Every connection must now see every covered value.
            for handle in handles {
                for slot in 0..<Self.slots where latest[slot].covered {
                    let bytes = try await handle.readBytes(8, at: UInt64(slot * 8))
                    let value = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                    if value != latest[slot].value { broken += 1 }
                }
            }
        }
        for handle in handles { await handle.close() }
        return broken
    }

    func testEmulateModeKeepsTheGuaranteeUnderRandomConcurrentTraffic() async throws {
        for tracking in MultiConnConfiguration.DirtyTracking.allCases {
            for strict in [false, true] {
                for seed: UInt64 in [1, 2, 3] {
                    let count = try await violations(
                        layers: [multiConn(.emulate, tracking)], strictFUA: strict, seed: seed)
                    XCTAssertEqual(count, 0, "emulate, track-dirty=\(tracking), strictfua=\(strict), seed \(seed)")
                }
            }
        }
    }

    func testPluginModeOverASharedCacheKeepsTheGuarantee() async throws {
        for seed: UInt64 in [4, 5] {
            let count = try await violations(
                layers: [multiConn(.plugin), SharedWritebackCacheLayer()], strictFUA: false, seed: seed)
            XCTAssertEqual(count, 0, "seed \(seed)")
        }
    }

    /// `--filter=multi-conn --filter=cache`: the cache filter in every mode under multi-conn in emulate
    /// mode, and writeback under plugin mode (the cache advertises multi-conn: one cache for every
    /// connection, and a flush anywhere writes back every dirty block).
    func testMultiConnOverTheCacheFilterKeepsTheGuarantee() async throws {
        let stacks: [(String, () throws -> [any FilterLayer])] = [
            ("emulate over writeback", { [multiConn(.emulate), try Self.cacheLayer(.writeback)] }),
            ("emulate over writethrough", { [multiConn(.emulate), try Self.cacheLayer(.writethrough)] }),
            ("plugin over writeback", { [multiConn(.plugin), try Self.cacheLayer(.writeback)] }),
            ("auto over writeback, cache-on-read", { [multiConn(.auto), try Self.cacheLayer(.writeback, onRead: true)] }),
        ]
        for (name, layers) in stacks {
            for strict in [false, true] {
                for seed: UInt64 in [8, 9] {
                    let count = try await violations(layers: try layers(), strictFUA: strict, seed: seed)
                    XCTAssertEqual(count, 0, "\(name), strictfua=\(strict), seed \(seed)")
                }
            }
        }
    }

    /// A cache that must reclaim (1 MiB, while 2 MiB are read through it every round) evicts dirty
    /// blocks through whichever connection needs room, and fills blocks through the reading
    /// connection. Over a layer below that is consistent across connections it keeps the guarantee by
    /// itself (plugin mode); over one with a private view per connection it cannot, which is why it
    /// then does not advertise multi-conn, and the check finds the stale reads: it has teeth over the
    /// cache filter too.
    func testAReclaimingCacheKeepsTheGuaranteeOnlyOverAConsistentLayer() async throws {
        let reclaiming = { try Self.cacheLayer(.writeback, onRead: true, maximumSize: 1 << 20) }
        for seed: UInt64 in [11, 12] {
            let count = try await violations(
                layers: [multiConn(.plugin), try reclaiming()], strictFUA: false, seed: seed, rounds: 30,
                filler: 2 << 20, consistentBelow: true)
            XCTAssertEqual(count, 0, "plugin mode over a reclaiming cache over a consistent layer, seed \(seed)")
        }
        let stale = try await violations(
            layers: [multiConn(.plugin), try reclaiming()], strictFUA: false, seed: 13, rounds: 30, filler: 2 << 20)
        XCTAssertGreaterThan(stale, 0, "a reclaiming cache over per-connection views must show stale reads")
    }

    static func cacheLayer(_ mode: CacheMode, onRead: Bool = false, maximumSize: UInt64? = nil) throws -> CacheLayer {
        try CacheLayer(
            configuration: CacheConfiguration(
                mode: mode, minimumBlockSize: 4096, cacheOnRead: onRead, maximumSize: maximumSize))
    }

    /// The check has teeth: with multi-conn disabled, per-connection caches serve stale data.
    func testTheCheckFindsViolationsWhenMultiConnIsDisabled() async throws {
        for strict in [false, true] {
            let count = try await violations(layers: [multiConn(.disable)], strictFUA: strict, seed: 7)
            XCTAssertGreaterThan(count, 0, "strictfua=\(strict): the model check must detect stale reads")
        }
    }
}

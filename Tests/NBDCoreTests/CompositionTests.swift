import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

/// Static and run-time composition, pass-through defaults, and feature emulation.
final class CompositionTests: XCTestCase {
    /// A filter that overrides nothing: everything must pass through.
    struct Transparent<Next: BlockBackend>: Filter {
        let next: Next
    }

    /// A layer that records the order in which layers see a request.
    struct Tagging<Next: BlockBackend>: Filter {
        let next: Next
        let tag: String
        let trail: OperationTrail
        func flush(flags: CommandFlags) async throws(NBDError) {
            trail.record(tag)
            try await next.flush(flags: flags)
        }
        func close() async {
            trail.record("close \(tag)")
            await next.close()
        }
    }

    final class OperationTrail: Sendable {
        let entries = LockedValue<[String]>([])
        func record(_ entry: String) { entries.withLock { $0.append(entry) } }
        var all: [String] { entries.withLock { $0 } }
    }

    struct TaggingLayer: FilterLayer {
        let tag: String
        let trail: OperationTrail
        var fails = false
        var name: String { tag }
        func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
            if fails { throw NBDError(.invalidArgument, "\(tag) refuses") }
            return AnyBlockBackend(Tagging(next: next, tag: tag, trail: trail))
        }
    }

    func testFilterPassesEveryOperationAndCapabilityThroughByDefault() async throws {
        let log = OperationLog()
        let provider = SharedMemoryTestProvider(size: 8192)
        let base = RecordingFilter(wrapping: try await provider.open(ConnectionInfo(id: 9)), log: log, connection: 9)
        let filter = Transparent(next: base)
        XCTAssertEqual(filter.capabilities, base.capabilities)
        try await filter.writeBytes([1, 2, 3], at: 10, flags: .fua)
        let read = try await filter.readBytes(3, at: 10)
        XCTAssertEqual(read, [1, 2, 3])
        try await filter.zero(count: 2, at: 10, flags: .noHole)
        try await filter.trim(count: 1, at: 0, flags: [])
        try await filter.flush(flags: [])
        try await filter.cache(count: 5, at: 0, flags: [])
        let extents = try await filter.extents(count: 100, at: 0, flags: .requestOne)
        XCTAssertEqual(extents, [.data(100)])
        XCTAssertEqual(
            log.all.map { "\($0.command) \($0.count)@\($0.offset) \($0.flags.rawValue)" },
            ["write 3@10 1", "read 3@10 0", "zero 2@10 2", "trim 1@0 0", "flush 0@0 0", "cache 5@0 0",
             "block status 100@0 8"])
    }

    func testRunTimeStackPutsTheFirstLayerOutermost() async throws {
        let trail = OperationTrail()
        let stack = FilterStack(
            [TaggingLayer(tag: "outer", trail: trail), TaggingLayer(tag: "inner", trail: trail)],
            over: SharedMemoryTestProvider(size: 4096))
        let backend = try await stack.open(ConnectionInfo())
        try await backend.flush(flags: [])
        await backend.close()
        XCTAssertEqual(trail.all, ["outer", "inner", "close outer", "close inner"])
    }

    func testStaticStackComposesInnermostFirst() async throws {
        let trail = OperationTrail()
        let provider = SharedMemoryTestProvider(size: 4096)
            .wrapped { next, _ in Tagging(next: next, tag: "inner", trail: trail) }
            .wrapped { next, _ in Tagging(next: next, tag: "outer", trail: trail) }
        let backend: Tagging<Tagging<SharedMemoryTestProvider.Backend>> = try await provider.open(ConnectionInfo())
        try await backend.flush(flags: [])
        XCTAssertEqual(trail.all, ["outer", "inner"])
    }

    func testARefusingLayerClosesTheLayersAlreadyOpened() async throws {
        let trail = OperationTrail()
        let stack = FilterStack(
            [TaggingLayer(tag: "outer", trail: trail, fails: true), TaggingLayer(tag: "inner", trail: trail)],
            over: SharedMemoryTestProvider(size: 4096))
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await stack.open(ConnectionInfo()) }, code: .invalidArgument)
        XCTAssertEqual(trail.all, ["close inner"])
    }

    /// A backend that reports emulated FUA and cache but cannot do them itself.
    struct EmulatedFeaturesBackend: BlockBackend {
        let log: OperationLog
        var capabilities: Capabilities { Capabilities(size: 4 << 20, fua: .emulated, cache: .emulated) }
        func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
            log.append(LoggedOperation(connection: 0, command: .read, offset: offset, count: UInt64(buffer.count), flags: flags))
        }
        func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
            log.append(LoggedOperation(connection: 0, command: .write, offset: offset, count: UInt64(data.count), flags: flags))
        }
        func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
            log.append(LoggedOperation(connection: 0, command: .writeZeroes, offset: offset, count: count, flags: flags))
        }
        func flush(flags: CommandFlags) async throws(NBDError) {
            log.append(LoggedOperation(connection: 0, command: .flush, offset: 0, count: 0, flags: flags))
        }
    }

    func testFeatureEmulationTurnsFUAIntoWriteThenFlushAndCacheIntoReads() async throws {
        let log = OperationLog()
        let backend = FeatureEmulation(wrapping: EmulatedFeaturesBackend(log: log))
        try await backend.writeBytes([1], at: 0, flags: .fua)
        try await backend.zero(count: 10, at: 0, flags: [.fua, .noHole])
        try await backend.cache(count: 3 << 20, at: 0, flags: [])
        XCTAssertEqual(
            log.all.map(\.description),
            ["c0 write 1@0 fua=0", "c0 flush 0@0 fua=0", "c0 zero 10@0 fua=0", "c0 flush 0@0 fua=0",
             "c0 read 1048576@0 fua=0", "c0 read 1048576@1048576 fua=0", "c0 read 1048576@2097152 fua=0"])
    }
}

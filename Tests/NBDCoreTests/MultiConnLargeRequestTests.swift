import NBDBackends
import NBDCore
import NBDTestSupport
import XCTest

/// multi-conn with dirty tracking passes zero and trim requests above 4 GiB (one request with
/// extended headers) down whole: it tracks whether a connection wrote, not which bytes.
final class MultiConnLargeRequestTests: XCTestCase {
    static let gib: UInt64 = 1 << 30

    func testAFiveGiBZeroAndTrimPassDownWholeAndMarkTheConnectionDirty() async throws {
        for tracking in [MultiConnConfiguration.DirtyTracking.connection, .fast] {
            let log = OperationLog()
            let layers: [any FilterLayer] = [
                MultiConnLayer(MultiConnConfiguration(mode: .emulate, dirtyTracking: tracking)),
                RecordingLayer(log: log),
            ]
            let export = try await FilterStack(layers, over: try MemoryBackendProvider(size: 16 * Self.gib))
                .open(ConnectionInfo())
            try await export.zero(count: 5 * Self.gib, at: 3 * Self.gib + 1, flags: [])
            try await export.trim(count: 5 * Self.gib, at: 9 * Self.gib, flags: [])
            try await export.flush(flags: [])
            XCTAssertEqual(
                log.all.map { "\($0.command) \($0.offset) \($0.count)" },
                [
                    "\(Command.writeZeroes) \(3 * Self.gib + 1) \(5 * Self.gib)",
                    "\(Command.trim) \(9 * Self.gib) \(5 * Self.gib)",
                    "\(Command.flush) 0 0",
                ], "dirty tracking \(tracking)")
            await export.close()
        }
    }
}

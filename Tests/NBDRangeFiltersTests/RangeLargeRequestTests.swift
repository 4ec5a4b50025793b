import NBDBackends
import NBDCore
import NBDRangeFilters
import NBDTestSupport
import XCTest

/// Zero, trim, cache and block status requests above 4 GiB (one request with extended headers)
/// through offset, truncate and protect, over sparse memory exports: each reaches the layer below
/// as one request with 64-bit ranges moved or clipped right.
final class RangeLargeRequestTests: XCTestCase {
    static let gib: UInt64 = 1 << 30

    private func memory(_ size: UInt64, log: OperationLog) async throws -> RecordingFilter<MemoryBackend> {
        RecordingFilter(
            wrapping: try await MemoryBackendProvider(size: size).open(ConnectionInfo()), log: log, connection: 1)
    }

    func testOffsetMovesFiveGiBRequestsWholeAcrossFourGiB() async throws {
        let log = OperationLog()
        let below = try await memory(16 * Self.gib, log: log)
        let filter = try OffsetFilter(wrapping: below, offset: 3 * Self.gib + 512, range: 10 * Self.gib)
        try await below.writeBytes([7], at: 3 * Self.gib + 511)
        try await below.writeBytes([7], at: 4 * Self.gib)
        try await below.writeBytes([7], at: 8 * Self.gib + 512)
        log.reset()

        try await filter.zero(count: 5 * Self.gib, at: 0, flags: [])
        XCTAssertEqual(
            log.all.map { "\($0.command) \($0.offset) \($0.count)" },
            ["\(Command.writeZeroes) \(3 * Self.gib + 512) \(5 * Self.gib)"], "one request, moved")
        try await assertEqual({ try await below.readBytes(1, at: 3 * Self.gib + 511) }, [7], "before the range")
        try await assertEqual({ try await below.readBytes(1, at: 4 * Self.gib) }, [0], "zeroed")
        try await assertEqual({ try await below.readBytes(1, at: 8 * Self.gib + 512) }, [7], "after the zero")
        log.reset()
        try await filter.trim(count: 5 * Self.gib, at: Self.gib, flags: [])
        try await filter.cache(count: 5 * Self.gib, at: 2 * Self.gib, flags: [])
        let extents = try await filter.extents(count: 6 * Self.gib, at: Self.gib, flags: [])

        XCTAssertEqual(
            log.all.map { "\($0.command) \($0.offset) \($0.count)" },
            [
                "\(Command.trim) \(4 * Self.gib + 512) \(5 * Self.gib)",
                "\(Command.cache) \(5 * Self.gib + 512) \(5 * Self.gib)",
                "\(Command.blockStatus) \(4 * Self.gib + 512) \(6 * Self.gib)",
            ])
        XCTAssertEqual(extents, [.hole(6 * Self.gib)], "one run above 4 GiB")
    }

    func testTruncateClipsFiveGiBRequestsAtTheRealSize() async throws {
        let log = OperationLog()
        let below = try await memory(6 * Self.gib + 100, log: log)
        let filter = try TruncateFilter(wrapping: below, truncate: 16 * Self.gib)
        try await below.writeBytes([7], at: 6 * Self.gib + 99)
        log.reset()

        try await filter.zero(count: 5 * Self.gib, at: 4 * Self.gib, flags: [])
        try await filter.trim(count: 5 * Self.gib, at: 3 * Self.gib, flags: [])
        try await filter.cache(count: 5 * Self.gib, at: 7 * Self.gib, flags: [])
        try await filter.zero(count: 5 * Self.gib, at: 7 * Self.gib, flags: [])
        let extents = try await filter.extents(count: 9 * Self.gib, at: Self.gib, flags: [])

        XCTAssertEqual(
            log.all.map { "\($0.command) \($0.offset) \($0.count)" },
            [
                "\(Command.writeZeroes) \(4 * Self.gib) \(2 * Self.gib + 100)",
                "\(Command.trim) \(3 * Self.gib) \(3 * Self.gib + 100)",
                "\(Command.blockStatus) \(Self.gib) \(5 * Self.gib + 100)",
            ], "requests past the real size never reach the layer below")
        try await assertEqual({ try await filter.readBytes(1, at: 6 * Self.gib + 99) }, [0])
        XCTAssertEqual(extents.reduce(0) { $0 + $1.length }, 9 * Self.gib)
        XCTAssertEqual(extents.last, .hole(4 * Self.gib - 100), "the added tail is one run")
    }

    func testProtectChecksAFiveGiBZeroAgainstARangeAboveFourGiB() async throws {
        let log = OperationLog()
        let below = try await memory(16 * Self.gib, log: log)
        let protected = 5 * Self.gib..<(5 * Self.gib + 4096)
        let filter = ProtectFilter(
            wrapping: below, protecting: ProtectedRanges([protected.lowerBound...(protected.upperBound - 1)]))

        // The protected bytes are zero: a zero over them changes nothing, so it passes whole.
        try await filter.zero(count: 5 * Self.gib, at: 2 * Self.gib, flags: [])
        XCTAssertEqual(log.all.filter { $0.command == .writeZeroes }.map(\.count), [5 * Self.gib])
        XCTAssertEqual(
            log.all.filter { $0.command == .read }.reduce(0) { $0 + $1.count }, 4096,
            "only the protected part is read to check it")

        // Trim leaves the protected part alone and trims around it.
        log.reset()
        try await filter.trim(count: 5 * Self.gib, at: 2 * Self.gib, flags: [])
        XCTAssertEqual(
            log.all.filter { $0.command == .trim }.map { [$0.offset, $0.count] },
            [[2 * Self.gib, 3 * Self.gib], [protected.upperBound, 2 * Self.gib - 4096]])

        // Protected bytes that are not zero: the zero is refused with EPERM and nothing changes.
        try await below.writeBytes([9], at: protected.upperBound - 1)
        try await below.writeBytes([9], at: 3 * Self.gib)
        log.reset()
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await filter.zero(count: 5 * Self.gib, at: 2 * Self.gib, flags: []) },
            code: .notPermitted)
        XCTAssertTrue(log.all.allSatisfy { $0.command == .read }, "\(log.all)")
        try await assertEqual({ try await below.readBytes(1, at: 3 * Self.gib) }, [9])
    }
}

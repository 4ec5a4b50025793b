import Foundation
import NBDClient
import NBDCore
import NBDTestSupport
import XCTest

/// The client's extended headers (`NBD_OPT_EXTENDED_HEADERS`) against real servers: qemu-nbd 10
/// (which speaks them) over an 8 GiB sparse file, and nbdkit 1.32 (which does not) for the fallback.
final class ExtendedHeadersClientTests: ClientTestCase {
    private static let gib: UInt64 = 1 << 30

    /// Skips (fails under `NBD_INTEROP=required`) unless qemu-nbd is 8.2 or later, the first with
    /// extended headers.
    private func requireQemuNbdWithExtendedHeaders() throws {
        try InteropRequirement.require("qemu-nbd")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: InteropRequirement.path(of: "qemu-nbd")!)
        process.arguments = ["--version"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // --version prints one line and exits: reading to the end is bounded by that.
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let version = text.split(separator: " ").dropFirst().first.map {
            $0.split(separator: ".").compactMap { Int($0) }
        }
        guard let version, version.count >= 2, (version[0], version[1]) >= (8, 2) else {
            let message =
                "qemu-nbd \(text.split(separator: "\n").first ?? "") has no extended headers (8.2 or later needed: Debian package qemu-utils from bookworm-backports)"
            if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" {
                XCTFail("NBD_INTEROP=required but \(message)")
            }
            throw XCTSkip(message)
        }
    }

    func testQemuNbdNegotiatesExtendedHeadersAndEveryCommandRoundTrips() async throws {
        try requireQemuNbdWithExtendedHeaders()
        let path = try await startQemuNbd(size: Int(8 * Self.gib))
        let info = try await NBDConnection.exportInfo(at: .unix(path))
        XCTAssertTrue(info.extendedHeaders, "NBD_OPT_INFO after NBD_OPT_EXTENDED_HEADERS")
        let connection = try await NBDConnection.connect(to: .unix(path))
        XCTAssertTrue(connection.export.extendedHeaders)
        XCTAssertTrue(connection.export.structuredReplies)
        XCTAssertTrue(connection.export.canBlockStatus)
        XCTAssertEqual(connection.export.size, 8 * Self.gib)

        // Data on both sides of the 4 GiB line and at the end, written with FUA and read back.
        let pattern = (0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        for offset in [0, 4 * Self.gib - 32768, 7 * Self.gib] {
            try await connection.write(pattern, at: offset, flags: .fua)
            let back = try await connection.read(count: pattern.count, at: offset)
            XCTAssertTrue(back == pattern, "read after write at \(offset)")
        }
        try await connection.flush()
        try await connection.cache(count: 6 * Self.gib, at: 0)
        try await connection.trim(count: 4096, at: 7 * Self.gib + 65536)

        // A 5 GiB zero is one request, and the data it covered reads as zeroes.
        let before = connection.requestsSent
        try await connection.zero(count: 5 * Self.gib, at: 1 * Self.gib + 4096)
        XCTAssertEqual(connection.requestsSent - before, 1, "one NBD_CMD_WRITE_ZEROES for 5 GiB")
        let zeroed = try await connection.read(count: pattern.count, at: 4 * Self.gib - 32768)
        XCTAssertTrue(zeroed.allSatisfy { $0 == 0 }, "the zeroed range reads as zeroes")
        let kept = try await connection.read(count: pattern.count, at: 7 * Self.gib)
        XCTAssertTrue(kept == pattern, "the zero stops where it was told")
        let one = try await connection.blockStatus(count: 5 * Self.gib, at: 1 * Self.gib + 4096, flags: .requestOne)
        XCTAssertEqual(one.count, 1)
        XCTAssertTrue(one.first?.flags.contains(.zero) ?? false, "\(one)")

        // Block status over the whole export: 64-bit extents, one of them (the zeroed range and the
        // holes around it) longer than 4 GiB.
        let extents = try await connection.blockStatus(count: 8 * Self.gib, at: 0)
        XCTAssertEqual(extents.first?.flags.contains(.zero), false, "data first: \(extents)")
        XCTAssertTrue(extents.contains { $0.length > 4 * Self.gib && $0.flags.contains(.zero) }, "\(extents)")
        XCTAssertLessThanOrEqual(extents.reduce(0) { $0 + $1.length }, 8 * Self.gib)

        await connection.disconnect()
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await connection.flush() }, code: .shutdown)
    }

    func testWithTheSwitchOffQemuNbdGivesStructuredRepliesAndLargeZeroesAreSplit() async throws {
        try requireQemuNbdWithExtendedHeaders()
        let path = try await startQemuNbd(size: Int(8 * Self.gib))
        let connection = try await NBDConnection.connect(
            to: .unix(path), configuration: ClientConfiguration(extendedHeaders: false))
        XCTAssertFalse(connection.export.extendedHeaders)
        XCTAssertTrue(connection.export.structuredReplies)
        try await connection.write([UInt8](repeating: 9, count: 4096), at: 5 * Self.gib, flags: .fua)
        let before = connection.requestsSent
        try await connection.zero(count: 5 * Self.gib, at: 1 * Self.gib)
        XCTAssertEqual(connection.requestsSent - before, 2, "split below 4 GiB")
        let back = try await connection.read(count: 4096, at: 5 * Self.gib)
        XCTAssertTrue(back.allSatisfy { $0 == 0 }, "zeroed")
        let extents = try await connection.blockStatus(count: 8 * Self.gib, at: 0)
        XCTAssertLessThanOrEqual(extents.reduce(0) { $0 + $1.length }, UInt64(UInt32.max))
        await connection.disconnect()
    }

    func testNbdkitWithoutExtendedHeadersFallsBackToStructuredReplies() async throws {
        let (path, _) = try await startNbdkit(["memory", "8G"])
        let connection = try await NBDConnection.connect(to: .unix(path))
        XCTAssertFalse(connection.export.extendedHeaders)
        XCTAssertTrue(connection.export.structuredReplies)
        try await connection.write([UInt8](repeating: 3, count: 4096), at: 6 * Self.gib)
        let before = connection.requestsSent
        try await connection.zero(count: 5 * Self.gib, at: 2 * Self.gib)
        XCTAssertEqual(connection.requestsSent - before, 2, "split below 4 GiB")
        let back = try await connection.read(count: 4096, at: 6 * Self.gib)
        XCTAssertTrue(back.allSatisfy { $0 == 0 }, "zeroed")
        await connection.disconnect()
    }
}

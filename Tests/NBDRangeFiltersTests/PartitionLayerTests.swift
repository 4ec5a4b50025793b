import NBDCore
import NBDRangeFilters
import NBDTestSupport
import XCTest

/// The partition filter: MBR primary and logical partitions, GPT, and the refusals.
final class PartitionLayerTests: XCTestCase {
    private func put(_ backend: TestMemoryBackend, _ bytes: [UInt8], at offset: UInt64) async throws {
        try await backend.writeBytes(bytes, at: offset, flags: [])
    }

    private func le(_ value: UInt64, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    private func mbrEntry(type: UInt8, start: UInt64, count: UInt64) -> [UInt8] {
        [0, 0, 0, 0, type, 0, 0, 0] + le(start, 4) + le(count, 4)
    }

    private func sector(entries: [[UInt8]]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 512)
        for (index, entry) in entries.enumerated() {
            bytes.replaceSubrange((0x1be + 16 * index)..<(0x1be + 16 * index + 16), with: entry)
        }
        bytes[0x1fe] = 0x55
        bytes[0x1ff] = 0xaa
        return bytes
    }

    /// Primary 1 at sector 8 (16 sectors), extended 2 at sector 64 (128 sectors) with logical 5
    /// (8 sectors after its EBR) and 6.
    private func mbrDisk() async throws -> TestMemoryBackend {
        let disk = TestMemoryBackend(size: 256 * 512)
        try await put(
            disk, sector(entries: [mbrEntry(type: 0x83, start: 8, count: 16), mbrEntry(type: 0x05, start: 64, count: 128)]),
            at: 0)
        try await put(
            disk, sector(entries: [mbrEntry(type: 0x83, start: 8, count: 8), mbrEntry(type: 0x05, start: 32, count: 40)]),
            at: 64 * 512)
        try await put(disk, sector(entries: [mbrEntry(type: 0x83, start: 4, count: 20)]), at: 96 * 512)
        try await put(disk, [1, 2, 3], at: 8 * 512)
        try await put(disk, [5, 5, 5], at: 72 * 512)
        return disk
    }

    func testMBRPrimaryAndLogicalPartitions() async throws {
        let disk = try await mbrDisk()
        let cases: [(UInt32, UInt64, UInt64)] = [(1, 8 * 512, 16 * 512), (5, 72 * 512, 8 * 512), (6, 100 * 512, 20 * 512)]
        for (number, offset, length) in cases {
            let location = try await PartitionTable.locate(partition: number, in: disk)
            XCTAssertEqual(location, PartitionTable.Location(offset: offset, length: length, scheme: "MBR"), "\(number)")
        }
        let first = try await PartitionLayer(parameters: ["partition": "1"]).wrap(AnyBlockBackend(disk), for: ConnectionInfo())
        XCTAssertEqual(first.capabilities.size, 16 * 512)
        let value10 = try await first.readBytes(3, at: 0)
        XCTAssertEqual(value10, [1, 2, 3])
        let logical = try await PartitionLayer(partition: 5).wrap(AnyBlockBackend(disk), for: ConnectionInfo())
        let value11 = try await logical.readBytes(3, at: 0)
        XCTAssertEqual(value11, [5, 5, 5])
    }

    func testMissingPartitionsAndUnpartitionedDisksAreRefusedWithEINVAL() async throws {
        let disk = try await mbrDisk()
        for number: UInt32 in [2, 3, 7] {
            let error = await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in _ = try await PartitionTable.locate(partition: number, in: disk) },
                code: .invalidArgument)
            XCTAssertTrue(error?.message.contains("not found") == true, "\(String(describing: error))")
        }
        let blank = TestMemoryBackend(size: 1 << 20)
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await PartitionLayer(partition: 1).wrap(AnyBlockBackend(blank), for: ConnectionInfo()) },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("no MBR or GPT") == true, "\(String(describing: error))")
        // A partition whose end lies past the disk.
        let short = TestMemoryBackend(size: 64 * 512)
        try await put(short, sector(entries: [mbrEntry(type: 0x83, start: 8, count: 100)]), at: 0)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await PartitionTable.locate(partition: 1, in: short) }, code: .invalidArgument)
    }

    func testGPTPartitionsFromTheEntryArray() async throws {
        let disk = TestMemoryBackend(size: 1 << 20)
        try await put(disk, sector(entries: [mbrEntry(type: 0xee, start: 1, count: 2047)]), at: 0)
        var header = Array("EFI PART".utf8) + [UInt8](repeating: 0, count: 84)
        header.replaceSubrange(72..<80, with: le(2, 8))
        header.replaceSubrange(80..<84, with: le(128, 4))
        header.replaceSubrange(84..<88, with: le(128, 4))
        try await put(disk, header, at: 512)
        func entry(first: UInt64, last: UInt64) -> [UInt8] {
            [UInt8](repeating: 0xaf, count: 16) + [UInt8](repeating: 1, count: 16) + le(first, 8) + le(last, 8)
        }
        try await put(disk, entry(first: 34, last: 1033), at: 1024)
        try await put(disk, entry(first: 1034, last: 1999), at: 1024 + 2 * 128)
        let first = try await PartitionTable.locate(partition: 1, in: disk)
        XCTAssertEqual(first, PartitionTable.Location(offset: 34 * 512, length: 1000 * 512, scheme: "GPT"))
        let third = try await PartitionTable.locate(partition: 3, in: disk)
        XCTAssertEqual(third.offset, 1034 * 512)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await PartitionTable.locate(partition: 2, in: disk) }, code: .invalidArgument)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await PartitionTable.locate(partition: 129, in: disk) }, code: .invalidArgument)
        // A header whose entry array lies far beyond the disk (an untrusted LBA) is refused.
        header.replaceSubrange(72..<80, with: le(UInt64.max / 3, 8))
        try await put(disk, header, at: 512)
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await PartitionTable.locate(partition: 1, in: disk) }, code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("outside the disk") == true, "\(String(describing: error))")
    }

    func testParametersNameWhatTheyAccept() {
        XCTAssertThrowsError(try PartitionLayer(parameters: [:])) { error in
            XCTAssertTrue("\(error)".contains("partition=... is required"), "\(error)")
        }
        XCTAssertThrowsError(try PartitionLayer(parameters: ["partition": "0"])) { error in
            XCTAssertTrue("\(error)".contains("partition=0"), "\(error)")
        }
        XCTAssertThrowsError(try PartitionLayer(parameters: ["partition": "1", "partition-sectorsize": "1k"])) { error in
            XCTAssertTrue("\(error)".contains("partition-sectorsize=1k: expected 512 or 4k"), "\(error)")
        }
        XCTAssertEqual(try PartitionLayer(parameters: ["partition": "2", "partition-sectorsize": "4k"]).sectorSize, 4096)
    }
}

import NBDCore

/// Finds a partition in the MBR or GPT partition table of a disk, as nbdkit's partition filter and
/// `qemu-nbd -P` do: partitions count from 1; in an MBR, 1 to 4 are primary and 5 on are the logical
/// partitions of the extended partition, in the order of its EBR chain.
public enum PartitionTable {
    /// Where a partition lies on its disk, in bytes.
    public struct Location: Sendable, Hashable {
        /// Creates a location.
        public init(offset: UInt64, length: UInt64, scheme: String) {
            self.offset = offset
            self.length = length
            self.scheme = scheme
        }
        /// The first byte of the partition.
        public var offset: UInt64
        /// The partition's length.
        public var length: UInt64
        /// `MBR` or `GPT`.
        public var scheme: String
    }

    /// Reads the partition table of `disk` and returns where partition `number` lies.
    ///
    /// - Parameters:
    ///   - number: the partition, from 1.
    ///   - sectorSize: 512 or 4096; `nil` takes the disk's minimum block size when it is one of
    ///     those, else 512.
    ///   - disk: the partitioned disk.
    /// - Throws: `NBDError` (`EINVAL`) saying what is wrong when the disk has no MBR or GPT
    ///   signature, the partition does not exist, or the table points outside the disk; read errors
    ///   of `disk` as they are.
    public static func locate(
        partition number: UInt32, sectorSize: UInt64? = nil, in disk: some BlockBackend
    ) async throws(NBDError) -> Location {
        let size = disk.capabilities.size
        let minimum = UInt64(disk.capabilities.blockSize.minimum)
        let sector = sectorSize ?? (minimum == 512 || minimum == 4096 ? minimum : 512)
        guard size >= 2 * sector else {
            throw NBDError(.invalidArgument, "partition: the disk (\(size) bytes) is too small to be partitioned")
        }
        let first = try await readBytes(of: disk, count: Int(2 * sector), at: 0)
        let location: Location
        if size >= 3 * sector + 2 * 128 * 128, first[Int(sector)..<Int(sector) + 8].elementsEqual("EFI PART".utf8) {
            location = try await gpt(Array(first[Int(sector)...]), number: number, sector: sector, size: size, disk: disk)
        } else if first[0x1fe] == 0x55 && first[0x1ff] == 0xaa {
            location = try await mbr(first, number: number, sector: sector, size: size, disk: disk)
        } else {
            throw NBDError(.invalidArgument, "partition: the disk has no MBR or GPT partition table signature")
        }
        guard location.offset <= size, location.length <= size - location.offset else {
            throw NBDError(
                .invalidArgument,
                "partition: \(location.scheme) partition \(number) (offset \(location.offset), length \(location.length)) lies outside the disk (\(size) bytes)"
            )
        }
        return location
    }

    private static func readBytes(of disk: some BlockBackend, count: Int, at offset: UInt64) async throws(NBDError)
        -> [UInt8]
    {
        // `withUnsafeMutableBytes` cannot span an `await`: read into a buffer owned here.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { buffer.deallocate() }
        try await disk.read(into: buffer, at: offset, flags: [])
        return Array(buffer)
    }

    private static func le32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(0 as UInt32) { $0 | UInt32(bytes[at + $1]) << (8 * $1) }
    }

    private static func le64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(0 as UInt64) { $0 | UInt64(bytes[at + $1]) << (8 * $1) }
    }

    /// One MBR entry: type byte, first sector, sector count.
    private static func mbrEntry(_ sector: [UInt8], _ index: Int) -> (type: UInt8, start: UInt64, count: UInt64) {
        let base = 0x1be + 16 * index
        return (sector[base + 4], UInt64(le32(sector, base + 8)), UInt64(le32(sector, base + 12)))
    }

    private static func isExtended(_ type: UInt8) -> Bool { type == 0x05 || type == 0x0f || type == 0x85 }

    private static func mbr(_ bytes: [UInt8], number: UInt32, sector: UInt64, size: UInt64, disk: some BlockBackend)
        async throws(NBDError) -> Location
    {
        if number <= 4 {
            let entry = mbrEntry(bytes, Int(number) - 1)
            guard entry.count > 0, entry.type != 0, !isExtended(entry.type) else {
                throw NBDError(.invalidArgument, "partition: MBR partition \(number) not found")
            }
            guard entry.type != 0xee else {
                throw NBDError(
                    .invalidArgument,
                    "partition: MBR partition \(number) is a GPT protective entry; if the disk uses \(sector == 512 ? 4096 : 512)-byte sectors, try partition-sectorsize=\(sector == 512 ? "4k" : "512")"
                )
            }
            return Location(offset: entry.start * sector, length: entry.count * sector, scheme: "MBR")
        }
        guard let extended = (0..<4).map({ mbrEntry(bytes, $0) }).first(where: { $0.count > 0 && isExtended($0.type) })
        else {
            throw NBDError(
                .invalidArgument, "partition: logical partition \(number) asked for, but the MBR has no extended partition")
        }
        let extendedEnd = (extended.start + extended.count) * sector
        var ebr = extended.start * sector
        var logical: UInt32 = 5
        while true {
            guard ebr >= sector, ebr % sector == 0, ebr < size - sector else {
                throw NBDError(.invalidArgument, "partition: the EBR chain points outside the disk")
            }
            let record = try await readBytes(of: disk, count: Int(sector), at: ebr)
            if logical == number {
                let entry = mbrEntry(record, 0)
                let offset = ebr + entry.start * sector
                let length = entry.count * sector
                guard offset > ebr, offset + length <= extendedEnd else {
                    throw NBDError(
                        .invalidArgument, "partition: logical partition \(number) lies outside its extended partition")
                }
                return Location(offset: offset, length: length, scheme: "MBR")
            }
            let link = mbrEntry(record, 1)
            guard link.start != 0 || link.count != 0 else { break }
            let nextEBR = (extended.start + link.start) * sector
            // Only links that move forward are followed, so a looping chain ends.
            guard nextEBR > ebr else {
                throw NBDError(.invalidArgument, "partition: the EBR chain does not move forward")
            }
            ebr = nextEBR
            logical += 1
        }
        throw NBDError(.invalidArgument, "partition: MBR logical partition \(number) not found")
    }

    private static func gpt(_ header: [UInt8], number: UInt32, sector: UInt64, size: UInt64, disk: some BlockBackend)
        async throws(NBDError) -> Location
    {
        let entriesLBA = le64(header, 72)
        let entryCount = le32(header, 80)
        let entrySize = UInt64(le32(header, 84))
        guard number <= entryCount else {
            throw NBDError(
                .invalidArgument, "partition: GPT partition \(number) is out of range (the table has \(entryCount) entries)")
        }
        guard entrySize >= 128, entrySize <= sector, sector % entrySize == 0 else {
            throw NBDError(.invalidArgument, "partition: the GPT entry size (\(entrySize) bytes) is invalid")
        }
        // The header is untrusted: an entry LBA beyond the disk must not overflow.
        guard entriesLBA >= 2, entriesLBA < size / sector else {
            throw NBDError(.invalidArgument, "partition: the GPT partition array lies outside the disk")
        }
        let entryOffset = entriesLBA * sector + UInt64(number - 1) * entrySize
        guard entryOffset + entrySize <= size else {
            throw NBDError(.invalidArgument, "partition: the GPT partition array lies outside the disk")
        }
        let entry = try await readBytes(of: disk, count: Int(entrySize), at: entryOffset)
        guard entry[0..<16].contains(where: { $0 != 0 }) else {
            throw NBDError(.invalidArgument, "partition: GPT partition \(number) not found")
        }
        let firstLBA = le64(entry, 32)
        let lastLBA = le64(entry, 40)
        guard lastLBA >= firstLBA, lastLBA < UInt64.max / sector else {
            throw NBDError(.invalidArgument, "partition: GPT partition \(number) has an invalid range")
        }
        return Location(offset: firstLBA * sector, length: (lastLBA - firstLBA + 1) * sector, scheme: "GPT")
    }
}

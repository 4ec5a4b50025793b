import NBDCore

/// Where one guest cluster's data is, decoded from its L1 and L2 entries and checked against the file.
package enum QCOW2Cluster: Sendable, Hashable {
    /// Not allocated (no L2 table, or an empty entry): reads as zeroes, as there is no backing file.
    case unallocated
    /// The zero flag is set: reads as zeroes whatever the entry's offset says.
    case zero
    /// Stored as is: the cluster's bytes start at `hostOffset` of the file.
    case data(hostOffset: UInt64)
    /// Compressed: `length` bytes at `hostOffset` hold the compressed cluster (possibly followed by
    /// padding up to the next 512-byte sector).
    case compressed(hostOffset: UInt64, length: UInt64)

    /// Reserved bits of an L1 entry: 56 to 62 and 0 to 8 (bit 63 is the "copied" flag, ignored here).
    static let l1ReservedMask: UInt64 = 0x7F00_0000_0000_01FF
    /// The bits of an L1 or standard L2 entry that hold the offset: 9 to 55.
    static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
    /// Reserved bits of a standard L2 entry: 56 to 61 and 1 to 8.
    static let l2ReservedMask: UInt64 = 0x3F00_0000_0000_01FE
    /// Bit 62 of an L2 entry: the cluster is compressed.
    static let compressedBit: UInt64 = 1 << 62

    /// Where the L2 table of an L1 entry is, or `nil` when the L1 entry is empty.
    ///
    /// - Throws: `NBDError` (`EIO`) when reserved bits are set or the table is not a whole,
    ///   cluster-aligned cluster of the file.
    package static func l2TableOffset(l1Entry: UInt64, index: Int, header: QCOW2Header) throws(NBDError) -> UInt64? {
        guard l1Entry & l1ReservedMask == 0 else {
            throw NBDError(
                .ioError,
                "qcow2dec: the image is corrupt: L1 entry \(index) (0x\(String(l1Entry, radix: 16))) has reserved bits set"
            )
        }
        let offset = l1Entry & offsetMask
        if offset == 0 { return nil }
        let clusterSize = header.clusterSize
        guard offset & (clusterSize - 1) == 0, offset <= header.fileSize, clusterSize <= header.fileSize - offset else {
            throw NBDError(
                .ioError,
                "qcow2dec: the image is corrupt: L1 entry \(index) points to an L2 table at offset \(offset), not a cluster inside the file (\(header.fileSize) bytes)"
            )
        }
        return offset
    }

    /// Decodes the L2 entry of guest cluster `cluster`.
    ///
    /// - Throws: `NBDError` (`EIO`) when reserved bits are set or the data lies outside the file.
    package init(l2Entry entry: UInt64, cluster: UInt64, header: QCOW2Header) throws(NBDError) {
        let clusterSize = header.clusterSize
        func corrupt(_ what: String) -> NBDError {
            NBDError(
                .ioError,
                "qcow2dec: the image is corrupt: the L2 entry of the cluster at guest offset \(cluster << UInt64(header.clusterBits)) (0x\(String(entry, radix: 16))) \(what)"
            )
        }
        if entry & Self.compressedBit != 0 {
            // Compressed descriptor: the low `x` bits are the byte offset, the bits from `x` to 61
            // count the 512-byte sectors after the one holding that offset. Bit 63 (copied) means
            // nothing to a reader, as in qemu and nbdkit.
            let x = 62 - (UInt64(header.clusterBits) - 8)
            let hostOffset = entry & ((1 << x) - 1)
            let extraSectors = (entry >> x) & ((1 << (UInt64(header.clusterBits) - 8)) - 1)
            guard hostOffset >> 56 == 0, hostOffset >= 512, hostOffset < header.fileSize else {
                throw corrupt("points to compressed data outside the file (\(header.fileSize) bytes)")
            }
            let end = min((hostOffset & ~511) + (extraSectors + 1) * 512, header.fileSize)
            let length = end - hostOffset
            // qemu stores a cluster uncompressed when compressing does not make it smaller; twice
            // the cluster size is a generous bound on what a decoder should ever read.
            guard length <= 2 * clusterSize else { throw corrupt("describes \(length) bytes of compressed data") }
            self = .compressed(hostOffset: hostOffset, length: length)
            return
        }
        guard entry & Self.l2ReservedMask == 0 else { throw corrupt("has reserved bits set") }
        if entry & 1 != 0 {
            self = .zero
            return
        }
        let hostOffset = entry & Self.offsetMask
        if hostOffset == 0 {
            self = .unallocated
            return
        }
        // The last cluster of a file may be short when the disk ends inside it; what lies past the
        // end of the file reads as zeroes, as in qemu. Data starting past the end is corruption.
        guard hostOffset & (clusterSize - 1) == 0, hostOffset < header.fileSize else {
            throw corrupt("points to data outside the file (\(header.fileSize) bytes) or not at a cluster boundary")
        }
        self = .data(hostOffset: hostOffset)
    }

    /// Whether the cluster reads as zeroes without reading the file (block status: hole and zero).
    package var readsAsZero: Bool {
        switch self {
        case .unallocated, .zero: true
        case .data, .compressed: false
        }
    }
}

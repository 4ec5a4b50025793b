/// Writes small qcow2 files by hand, so that tests can make exactly the header fields and table
/// entries they need, valid or not (real images from qemu-img are in the interop tests).
///
/// Layout: the header in cluster 0 (with the backing file name at byte 256), the L1 table from
/// cluster 1, then an L2 table for each L1 entry that has clusters, then the data clusters.
struct QCOW2Builder {
    enum Content {
        /// A stored cluster with these bytes (padded with zeroes to the cluster size).
        case data([UInt8])
        /// The zero flag, with no data.
        case zero
        /// This L2 entry as is.
        case entry(UInt64)
        /// A compressed cluster of these bytes (padded with zeroes to the cluster size), written as
        /// one stored deflate block, right after the previous compressed cluster's data, as qemu
        /// packs them. Needs clusters of at most 32 KiB (one stored block) and `clusterBits` >= 10.
        case compressed([UInt8])
    }

    var version: UInt32 = 3
    var clusterBits: UInt32 = 9
    var virtualSize: UInt64 = 64 << 10
    var incompatibleFeatures: UInt64 = 0
    var compressionType: UInt8 = 0
    var backingFile: String? = nil
    var encryption: UInt32 = 0
    var snapshots: UInt32 = 0
    /// The header's `l1_size`; `nil` for the number the virtual size needs.
    var l1Size: UInt32? = nil
    /// The header's L1 offset; `nil` for cluster 1.
    var l1Offset: UInt64? = nil
    /// L1 entries written as is, by index, instead of the table the builder allocates.
    var l1Overrides: [Int: UInt64] = [:]
    /// Guest cluster index to content.
    var clusters: [UInt64: Content] = [:]

    var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    var l2Entries: UInt64 { clusterSize / 8 }
    var l1Needed: Int {
        Int(((virtualSize + clusterSize - 1) / clusterSize + l2Entries - 1) / l2Entries)
    }

    func build() -> [UInt8] {
        let clusterSize = Int(self.clusterSize)
        // A huge virtual size (to test its refusal) gets only the first entries of its table.
        let l1Written = min(l1Needed, 1024)
        let l1Clusters = max(1, (l1Written * 8 + clusterSize - 1) / clusterSize)
        var file = [UInt8](repeating: 0, count: clusterSize * (1 + l1Clusters))
        func put64(_ value: UInt64, at offset: Int) {
            for index in 0..<8 { file[offset + index] = UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64(index))) }
        }
        func put32(_ value: UInt32, at offset: Int) {
            for index in 0..<4 { file[offset + index] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(index))) }
        }
        file[0..<4] = [0x51, 0x46, 0x49, 0xFB]
        put32(version, at: 4)
        if let backingFile {
            put64(256, at: 8)
            put32(UInt32(backingFile.utf8.count), at: 16)
            file.replaceSubrange(256..<(256 + backingFile.utf8.count), with: Array(backingFile.utf8))
        }
        put32(clusterBits, at: 20)
        put64(virtualSize, at: 24)
        put32(encryption, at: 32)
        put32(l1Size ?? UInt32(clamping: l1Needed), at: 36)
        put64(l1Offset ?? UInt64(clusterSize), at: 40)
        put32(snapshots, at: 60)
        if version >= 3 {
            put64(incompatibleFeatures, at: 72)
            put32(4, at: 96)
            put32(112, at: 100)
            file[104] = compressionType
        }
        // L2 tables for the L1 entries that have clusters, in index order.
        var l2Offsets: [Int: Int] = [:]
        for index in Set(clusters.keys.map { Int($0 / l2Entries) }).sorted() {
            l2Offsets[index] = file.count
            file += [UInt8](repeating: 0, count: clusterSize)
        }
        for index in 0..<l1Written {
            let entry = l1Overrides[index] ?? l2Offsets[index].map { UInt64($0) | 1 << 63 } ?? 0
            put64(entry, at: clusterSize + index * 8)
        }
        for (cluster, content) in clusters.sorted(by: { $0.key < $1.key }) {
            let slot = l2Offsets[Int(cluster / l2Entries)]! + Int(cluster % l2Entries) * 8
            switch content {
            case .data(let bytes):
                // Stored clusters start at a cluster boundary (compressed data before may not end on one).
                file += [UInt8](repeating: 0, count: (clusterSize - file.count % clusterSize) % clusterSize)
                put64(UInt64(file.count) | 1 << 63, at: slot)
                file += bytes + [UInt8](repeating: 0, count: clusterSize - bytes.count)
            case .zero:
                put64(1, at: slot)
            case .entry(let entry):
                put64(entry, at: slot)
            case .compressed(let bytes):
                // A final stored block: header bits, then LEN and its complement, little-endian.
                let length = UInt16(clusterSize)
                let block =
                    [0x01, UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8(~length >> 8)]
                    + bytes + [UInt8](repeating: 0, count: clusterSize - bytes.count)
                let host = UInt64(file.count)
                let x = 62 - (UInt64(clusterBits) - 8)
                let extraSectors = (host + UInt64(block.count) - 1) / 512 - host / 512
                put64(1 << 62 | extraSectors << x | host, at: slot)
                file += block
            }
        }
        return file
    }

    /// The raw disk the image holds (what a correct decoder serves), for images of `.data`,
    /// `.compressed` and `.zero`.
    func expectedDisk() -> [UInt8] {
        var disk = [UInt8](repeating: 0, count: Int(virtualSize))
        for (cluster, content) in clusters {
            let start = Int(cluster * clusterSize)
            switch content {
            case .data(let bytes), .compressed(let bytes):
                disk.replaceSubrange(start..<(start + bytes.count), with: bytes)
            case .zero, .entry:
                break
            }
        }
        return disk
    }
}

import NBDCore

/// The fields of a qcow2 header (version 2 or 3) that decoding needs, each checked against the
/// size of the file it was read from.
///
/// Only what a read-only decoder can serve is accepted: no backing file, no encryption, no internal
/// snapshots, no external data file, no extended L2 entries, and an image closed cleanly (neither
/// the dirty nor the corrupt bit set). The refcount fields are not read: a decoder never allocates.
package struct QCOW2Header: Sendable, Hashable {
    /// 2 (`compat=0.10`) or 3 (`compat=1.1`).
    package var version: UInt32
    /// log2 of the cluster size, 9 (512 bytes) to 21 (2 MiB).
    package var clusterBits: UInt32
    /// The size of the disk the image holds.
    package var virtualSize: UInt64
    /// Where the L1 table starts in the file (cluster-aligned).
    package var l1Offset: UInt64
    /// How many L1 entries the disk needs (at most the header's `l1_size`, which may be larger).
    package var l1Entries: Int
    /// How compressed clusters are compressed.
    package var compression: QCOW2Compression
    /// The size of the qcow2 file.
    package var fileSize: UInt64
    /// Where the backing file's name is (`nil`: no backing file); an image with one is refused by
    /// ``QCOW2Image/open(_:)``, which reads the name for its message.
    package var backingFile: (offset: UInt64, length: UInt32)? {
        backingFileOffset == 0 ? nil : (backingFileOffset, backingFileLength)
    }
    private var backingFileOffset: UInt64
    private var backingFileLength: UInt32

    /// How many header bytes ``init(_:fileSize:)`` wants: the version 3 header up to the compression type.
    package static let bytesNeeded = 112
    /// The largest L1 table decoded, in entries (qemu's limit too: 32 MiB of table).
    package static let maximumL1Entries = 4 << 20
    /// The qcow2 magic, `QFI\xfb`.
    static let magic: [UInt8] = [0x51, 0x46, 0x49, 0xFB]

    /// The cluster size in bytes.
    package var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    /// How many entries one L2 table (one cluster) holds.
    package var l2Entries: UInt64 { clusterSize / 8 }

    /// Parses the first bytes of a file of `fileSize` bytes (up to ``bytesNeeded``; fewer only when
    /// the file is shorter).
    ///
    /// - Throws: `NBDError` `EINVAL` when the bytes are not a qcow2 header or a field is out of range
    ///   for the file; `ENOTSUP` for a valid image using a feature this decoder does not serve.
    package init(_ bytes: some RandomAccessCollection<UInt8>, fileSize: UInt64) throws(NBDError) {
        let bytes = Array(bytes.prefix(Self.bytesNeeded))
        guard bytes.count >= 72, bytes.prefix(4).elementsEqual(Self.magic) else {
            throw NBDError(
                .invalidArgument,
                bytes.count >= 4 && bytes.prefix(4).elementsEqual(Self.magic)
                    ? "qcow2dec: the file is truncated: it is \(fileSize) bytes, shorter than a qcow2 header"
                    : "qcow2dec: not a qcow2 file: it does not start with the qcow2 magic 'QFI\\xfb' (check the format with 'qemu-img info')"
            )
        }
        func u32(_ at: Int) -> UInt32 { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
        func u64(_ at: Int) -> UInt64 { bytes[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) } }

        version = u32(4)
        guard version == 2 || version == 3 else {
            throw NBDError(
                .notSupported, "qcow2dec: qcow2 version \(version) is not supported: only versions 2 and 3")
        }
        clusterBits = u32(20)
        guard (9...21).contains(clusterBits) else {
            throw NBDError(
                .invalidArgument,
                "qcow2dec: the image is corrupt or unsupported: cluster_bits is \(clusterBits), not 9 to 21")
        }
        let clusterBytes: UInt64 = 1 << UInt64(clusterBits)
        let l2Count = clusterBytes / 8
        backingFileOffset = u64(8)
        backingFileLength = u32(16)
        virtualSize = u64(24)
        let encryption = u32(32)
        let l1Size = u32(36)
        l1Offset = u64(40)
        let snapshots = u32(60)
        self.fileSize = fileSize

        // Version 2 has no feature bits and always a 72-byte header.
        var incompatible: UInt64 = 0
        var compressionType: UInt8 = 0
        if version == 3 {
            guard bytes.count >= 104 else {
                throw NBDError(
                    .invalidArgument,
                    "qcow2dec: the file is truncated: it is \(fileSize) bytes, shorter than a qcow2 version 3 header")
            }
            incompatible = u64(72)
            let headerLength = u32(100)
            guard headerLength >= 104, UInt64(headerLength) <= clusterBytes, UInt64(headerLength) <= fileSize else {
                throw NBDError(
                    .invalidArgument,
                    "qcow2dec: the image is corrupt: the header length is \(headerLength) bytes (104 to one cluster)")
            }
            if headerLength > 104 {
                guard bytes.count > 104 else {
                    throw NBDError(.invalidArgument, "qcow2dec: the file is truncated inside its header")
                }
                compressionType = bytes[104]
            }
        }
        if backingFileOffset != 0 {
            // The caller reads the name for the message; nothing else matters for an image refused anyway.
            l1Entries = 0
            compression = .deflate
            return
        }
        guard encryption == 0 else {
            throw NBDError(
                .notSupported,
                "qcow2dec: the image is encrypted (method \(encryption)), which qcow2dec does not decode; decrypt it with 'qemu-img convert --object secret,... --image-opts ...'"
            )
        }
        try Self.check(incompatibleFeatures: incompatible)
        guard snapshots == 0 else {
            throw NBDError(
                .notSupported,
                "qcow2dec: the image has \(snapshots) internal snapshot(s), which qcow2dec does not support; remove them with 'qemu-img snapshot -d' or copy the image with 'qemu-img convert'"
            )
        }
        switch (incompatible & Self.compressionTypeBit != 0, compressionType) {
        case (_, 0): compression = .deflate
        case (true, 1): compression = .zstd
        default:
            throw NBDError(
                .notSupported, "qcow2dec: the image uses compression type \(compressionType), which is not zlib or zstd"
            )
        }

        guard virtualSize <= UInt64(Int64.max) else {
            throw NBDError(
                .invalidArgument, "qcow2dec: the image is corrupt: its virtual size \(virtualSize) is too large")
        }
        let clusters = (virtualSize + clusterBytes - 1) >> UInt64(clusterBits)
        let needed = (clusters + l2Count - 1) / l2Count
        guard needed <= UInt64(Self.maximumL1Entries) else {
            throw NBDError(
                .notSupported,
                "qcow2dec: the image's L1 table would have \(needed) entries, more than the \(Self.maximumL1Entries) qcow2dec loads"
            )
        }
        guard UInt64(l1Size) >= needed else {
            throw NBDError(
                .invalidArgument,
                "qcow2dec: the image is corrupt: its L1 table has \(l1Size) entries, but a virtual size of \(virtualSize) bytes needs \(needed)"
            )
        }
        l1Entries = Int(needed)
        guard
            needed == 0
                || (l1Offset >= clusterBytes && l1Offset & (clusterBytes - 1) == 0 && l1Offset <= fileSize
                    && needed * 8 <= fileSize - l1Offset)
        else {
            throw NBDError(
                .invalidArgument,
                "qcow2dec: the image is corrupt or truncated: its L1 table (\(needed * 8) bytes at offset \(l1Offset)) is not a cluster-aligned range inside the file (\(fileSize) bytes)"
            )
        }
    }

    /// The incompatible feature bit saying that the header's compression type field is used.
    static let compressionTypeBit: UInt64 = 1 << 3

    /// Refuses every incompatible feature but the compression type, saying what each one means.
    private static func check(incompatibleFeatures: UInt64) throws(NBDError) {
        let rest = incompatibleFeatures & ~compressionTypeBit
        guard rest != 0 else { return }
        let reason: String
        if rest & 1 != 0 {
            reason =
                "the image is marked dirty (it was not closed cleanly and its refcounts may be stale); repair it with 'qemu-img check -r all'"
        } else if rest & 2 != 0 {
            reason = "the image is marked corrupt by qemu; check and repair it with 'qemu-img check -r all'"
        } else if rest & 4 != 0 {
            reason = "the image keeps its data in an external data file, which qcow2dec does not read"
        } else if rest & 16 != 0 {
            reason = "the image uses extended L2 entries (subclusters), which qcow2dec does not decode"
        } else {
            let bits = (0..<64).filter { rest & (1 << UInt64($0)) != 0 }.map(String.init).joined(separator: ", ")
            reason = "the image uses incompatible features qcow2dec does not know (bits \(bits))"
        }
        throw NBDError(.notSupported, "qcow2dec: \(reason)")
    }
}

import NBDCore

/// An opened qcow2 image: its checked header, its L1 table and the L2 tables read so far. Shared by
/// every connection to the image; each call reads the file through the calling connection's layer
/// below.
///
/// Reads go cluster by cluster through the tables, but stored clusters that lie one after the other
/// in the file are read from it in one request, and so are compressed clusters whose data follow
/// one another, so a copy of an image written sequentially reads the file in large pieces. Every
/// offset taken from the file is checked before it is used: a corrupt table entry fails the request
/// that reaches it (`EIO`), never the server.
package final class QCOW2Image: Sendable {
    /// The checked header.
    package let header: QCOW2Header
    /// The L1 table, host byte order, as many entries as the virtual size needs.
    let l1: [UInt64]
    /// The L2 tables read so far.
    let tables: L2TableCache
    /// Whether the first allocated L2 table holds compressed clusters: then reads decompress, which
    /// takes far longer than a copy, and the filter hands them to the server's pool (see
    /// ``QCOW2DecFilter``). A hint: an image whose first table has none reads inline, correctly.
    package let holdsCompressedClusters: Bool

    /// At most this much L2 table data is cached per image (at 64 KiB clusters, the tables of
    /// 256 GiB of disk).
    package static let tableCacheBytes: UInt64 = 32 << 20
    /// The most clusters one block status request walks; the client asks again for the rest.
    static let maximumExtentClusters: UInt64 = 1 << 18

    private init(header: QCOW2Header, l1: [UInt64], tables: L2TableCache, holdsCompressedClusters: Bool) {
        self.header = header
        self.l1 = l1
        self.tables = tables
        self.holdsCompressedClusters = holdsCompressedClusters
    }

    /// Reads and checks the header and the L1 table of the image `next` serves.
    ///
    /// - Throws: `NBDError` saying why the image cannot be served: not qcow2 or corrupt (`EINVAL`),
    ///   a feature qcow2dec does not decode, a backing file (named), or zstd compression without
    ///   libzstd (`ENOTSUP`); or the layer below's error.
    package static func open(_ next: some BlockBackend) async throws(NBDError) -> QCOW2Image {
        let fileSize = next.capabilities.size
        let first = try await bytes(of: next, at: 0, count: min(UInt64(QCOW2Header.bytesNeeded), fileSize))
        let header = try QCOW2Header(first, fileSize: fileSize)
        if let backing = header.backingFile {
            throw NBDError(
                .notSupported,
                "qcow2dec: the image has a backing file\(try await backingName(backing, of: next)), which qcow2dec does not read; serve a flattened copy ('qemu-img convert -O qcow2 image.qcow2 flat.qcow2') instead"
            )
        }
        if header.compression == .zstd {
            // Refused at start rather than at the first compressed cluster: say now what is missing.
            _ = try Libzstd.shared.get()
        }
        let l1 = Self.bigEndianEntries(
            try await bytes(of: next, at: header.l1Offset, count: UInt64(header.l1Entries) * 8))
        let tables = L2TableCache(bytes: Self.tableCacheBytes, tableBytes: header.clusterSize)
        let compressed = await firstTableHoldsCompressedClusters(l1: l1, header: header, tables: tables, from: next)
        return QCOW2Image(header: header, l1: l1, tables: tables, holdsCompressedClusters: compressed)
    }

    /// Whether the first allocated L2 table has a compressed entry. Images made by `qemu-img convert
    /// -c` compress every cluster, so one table (one cluster of the file, kept in the cache for the
    /// reads that follow) tells. A corrupt entry or a failed read says `false` here: it fails the
    /// requests that reach it, not the connection.
    private static func firstTableHoldsCompressedClusters(
        l1: [UInt64], header: QCOW2Header, tables: L2TableCache, from next: some BlockBackend
    ) async -> Bool {
        guard let index = l1.firstIndex(where: { $0 & QCOW2Cluster.offsetMask != 0 }),
            let offset = try? QCOW2Cluster.l2TableOffset(l1Entry: l1[index], index: index, header: header),
            let raw = try? await bytes(of: next, at: offset, count: header.clusterSize)
        else { return false }
        let table = bigEndianEntries(raw)
        tables.insert(table, at: offset)
        return table.contains { $0 & QCOW2Cluster.compressedBit != 0 }
    }

    /// ` ('NAME')` when the name is readable, else nothing.
    private static func backingName(_ backing: (offset: UInt64, length: UInt32), of next: some BlockBackend)
        async throws(NBDError) -> String
    {
        let size = next.capabilities.size
        guard backing.length > 0, backing.length <= 1023, backing.offset <= size,
            UInt64(backing.length) <= size - backing.offset
        else { return "" }
        let name = try await bytes(of: next, at: backing.offset, count: UInt64(backing.length))
        return " ('\(String(decoding: name, as: UTF8.self))')"
    }

    // MARK: - Reads

    /// Fills `buffer` with the guest bytes at `offset` (a range inside the virtual size).
    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, from next: some BlockBackend)
        async throws(NBDError)
    {
        let clusterSize = header.clusterSize
        var cursor = TableCursor()
        // Stored data not yet read: `count` bytes of the file at `host` go to `buffer[start...]`.
        var pending: (host: UInt64, start: Int, count: Int)? = nil
        // Compressed clusters not yet read, whose data lie together in the file.
        var compressed = QCOW2CompressedRun()
        var done = 0
        while done < buffer.count {
            let position = offset + UInt64(done)
            let within = position & (clusterSize - 1)
            let length = min(Int(clusterSize - within), buffer.count - done)
            let cluster = try await cursor.cluster(position >> UInt64(header.clusterBits), in: self, from: next)
            if case .data(let host) = cluster {
                if !compressed.isEmpty { try await readCompressed(&compressed, into: buffer, from: next) }
                if let run = pending, run.host + UInt64(run.count) == host + within {
                    pending = (run.host, run.start, run.count + length)
                } else {
                    if let run = pending { try await readStored(run, into: buffer, from: next) }
                    pending = (host + within, done, length)
                }
                done += length
                continue
            }
            if let run = pending {
                try await readStored(run, into: buffer, from: next)
                pending = nil
            }
            switch cluster {
            case .compressed(let host, let compressedLength):
                let piece = QCOW2CompressedRun.Piece(
                    host: host, length: compressedLength, within: Int(within), start: done, count: length)
                if !compressed.accepts(piece) { try await readCompressed(&compressed, into: buffer, from: next) }
                compressed.append(piece)
            default:
                if !compressed.isEmpty { try await readCompressed(&compressed, into: buffer, from: next) }
                UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + length)])
                    .initializeMemory(as: UInt8.self, repeating: 0)
            }
            done += length
        }
        if let run = pending { try await readStored(run, into: buffer, from: next) }
        if !compressed.isEmpty { try await readCompressed(&compressed, into: buffer, from: next) }
    }

    /// Reads a run of stored clusters; what lies past the end of the file reads as zeroes.
    private func readStored(
        _ run: (host: UInt64, start: Int, count: Int), into buffer: UnsafeMutableRawBufferPointer,
        from next: some BlockBackend
    ) async throws(NBDError) {
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[run.start..<(run.start + run.count)])
        let inFile = Int(min(UInt64(run.count), header.fileSize - min(run.host, header.fileSize)))
        if inFile > 0 {
            try await Self.read(next, into: UnsafeMutableRawBufferPointer(rebasing: target[..<inFile]), at: run.host)
        }
        if inFile < run.count {
            UnsafeMutableRawBufferPointer(rebasing: target[inFile...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// Reads the file range of a run of compressed clusters, decompresses each into its place in
    /// `buffer`, and empties the run.
    private func readCompressed(
        _ run: inout QCOW2CompressedRun, into buffer: UnsafeMutableRawBufferPointer, from next: some BlockBackend
    ) async throws(NBDError) {
        defer { run.removeAll() }
        let clusterSize = Int(header.clusterSize)
        let file = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(run.end - run.host), alignment: 16)
        defer { file.deallocate() }
        try await Self.read(next, into: file, at: run.host)
        var cluster: UnsafeMutableRawBufferPointer? = nil
        defer { cluster?.deallocate() }
        for piece in run.pieces {
            let from = Int(piece.host - run.host)
            let input = UnsafeRawBufferPointer(rebasing: file[from..<(from + Int(piece.length))])
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[piece.start..<(piece.start + piece.count)])
            if piece.within == 0, piece.count == clusterSize {
                try header.compression.decompress(input, into: target, hostOffset: piece.host)
                continue
            }
            let whole = cluster ?? UnsafeMutableRawBufferPointer.allocate(byteCount: clusterSize, alignment: 16)
            cluster = whole
            try header.compression.decompress(input, into: whole, hostOffset: piece.host)
            target.copyMemory(
                from: UnsafeRawBufferPointer(rebasing: whole[piece.within..<(piece.within + piece.count)]))
        }
    }

    // MARK: - File regions

    /// Where the file holds the `count` guest bytes at `offset` as they read, in one piece: the host
    /// offset of the first, when the whole range lies in stored clusters (not compressed, not
    /// zero-flagged, allocated) that follow one another in the file and end inside it, and every L2
    /// table it needs is already cached. `nil` otherwise; it never reads the file (a table not yet
    /// cached is left to the read, which caches it).
    package func hostOffset(ofContiguous count: Int, at offset: UInt64) -> UInt64? {
        guard count > 0 else { return nil }
        let bits = UInt64(header.clusterBits)
        let clusterSize = header.clusterSize
        let end = offset + UInt64(count)
        var position = offset
        var start: UInt64? = nil
        var next: UInt64 = 0
        var cursor = TableCursor()
        while position < end {
            guard case .data(let host)? = cursor.cachedCluster(position >> bits, in: self) else { return nil }
            let within = position & (clusterSize - 1)
            let hostPosition = host + within
            if start != nil {
                guard hostPosition == next else { return nil }
            } else {
                start = hostPosition
            }
            let length = min(clusterSize - within, end - position)
            next = hostPosition + length
            position += length
        }
        // A stored cluster may end past the end of the file, where it reads as zeroes: not in the file.
        guard next <= header.fileSize else { return nil }
        return start
    }

    // MARK: - Block status

    /// The allocation of the guest range at `offset`: clusters that read as zero without data in
    /// the file (unallocated, or with the zero flag) are holes that read as zero, the others
    /// (stored or compressed) data. Walks at most ``maximumExtentClusters`` clusters.
    package func extents(count: UInt64, at offset: UInt64, requestOne: Bool, from next: some BlockBackend)
        async throws(NBDError) -> [Extent]
    {
        let bits = UInt64(header.clusterBits)
        let end = offset + count
        var cursor = TableCursor()
        var extents: [Extent] = []
        var position = offset
        var walked: UInt64 = 0
        while position < end, walked < Self.maximumExtentClusters {
            let cluster = try await cursor.cluster(position >> bits, in: self, from: next)
            let flags: Extent.Flags = cluster.readsAsZero ? [.hole, .zero] : []
            let clusterEnd = min(((position >> bits) + 1) << bits, end)
            if let last = extents.last, last.flags == flags {
                extents[extents.count - 1].length += clusterEnd - position
            } else {
                if requestOne, !extents.isEmpty { break }
                extents.append(Extent(length: clusterEnd - position, flags: flags))
            }
            position = clusterEnd
            walked += 1
        }
        return extents
    }

    // MARK: - Tables

    /// The L2 table a cluster's lookup last used, kept for the clusters after it.
    struct TableCursor {
        private var l1Index = -1
        private var table: [UInt64]? = nil

        /// Where guest cluster `cluster` is.
        mutating func cluster(_ cluster: UInt64, in image: QCOW2Image, from next: some BlockBackend)
            async throws(NBDError) -> QCOW2Cluster
        {
            let index = try Self.l1Index(of: cluster, in: image)
            if index != l1Index {
                table = try await image.l2Table(index, from: next)
                l1Index = index
            }
            return try Self.entry(of: cluster, in: table, header: image.header)
        }

        /// Where guest cluster `cluster` is, from the tables already cached: `nil` when its table is
        /// not (or is not allocated), or its entry is corrupt. Reads nothing.
        mutating func cachedCluster(_ cluster: UInt64, in image: QCOW2Image) -> QCOW2Cluster? {
            guard let index = try? Self.l1Index(of: cluster, in: image) else { return nil }
            if index != l1Index {
                guard let cached = image.cachedL2Table(index) else { return nil }
                table = cached
                l1Index = index
            }
            return try? Self.entry(of: cluster, in: table, header: image.header)
        }

        /// The L1 entry that covers guest cluster `cluster`.
        private static func l1Index(of cluster: UInt64, in image: QCOW2Image) throws(NBDError) -> Int {
            let index = cluster >> (UInt64(image.header.clusterBits) - 3)
            guard index < UInt64(image.l1.count) else {
                throw NBDError(.ioError, "qcow2dec: guest cluster \(cluster) is past the end of the L1 table")
            }
            return Int(index)
        }

        /// Guest cluster `cluster`'s entry in `table` (its L2 table, `nil` when not allocated).
        private static func entry(of cluster: UInt64, in table: [UInt64]?, header: QCOW2Header) throws(NBDError)
            -> QCOW2Cluster
        {
            guard let table else { return .unallocated }
            let l2Bits = UInt64(header.clusterBits) - 3
            return try QCOW2Cluster(
                l2Entry: table[Int(cluster & ((1 << l2Bits) - 1))], cluster: cluster, header: header)
        }
    }

    /// The L2 table of L1 entry `index` if it is cached; `nil` when it is not, or not allocated.
    func cachedL2Table(_ index: Int) -> [UInt64]? {
        guard let offset = try? QCOW2Cluster.l2TableOffset(l1Entry: l1[index], index: index, header: header) else {
            return nil
        }
        return tables.table(at: offset)
    }

    /// The L2 table of L1 entry `index`, from the cache or the file, or `nil` when not allocated.
    func l2Table(_ index: Int, from next: some BlockBackend) async throws(NBDError) -> [UInt64]? {
        guard let offset = try QCOW2Cluster.l2TableOffset(l1Entry: l1[index], index: index, header: header) else {
            return nil
        }
        if let table = tables.table(at: offset) { return table }
        let table = Self.bigEndianEntries(try await Self.bytes(of: next, at: offset, count: header.clusterSize))
        tables.insert(table, at: offset)
        return table
    }

    // MARK: - The layer below

    /// Big-endian 64-bit entries of a table.
    private static func bigEndianEntries(_ bytes: [UInt8]) -> [UInt64] {
        bytes.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
    }

    /// `count` bytes at `offset` of the layer below (a range the caller checked).
    private static func bytes(of next: some BlockBackend, at offset: UInt64, count: UInt64) async throws(NBDError)
        -> [UInt8]
    {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(count), alignment: 16)
        defer { buffer.deallocate() }
        try await read(next, into: buffer, at: offset)
        return Array(buffer)
    }

    /// Reads from the layer below in pieces of at most 32 MiB (the NBD limit, for layers below that
    /// pass requests on).
    private static func read(_ next: some BlockBackend, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64)
        async throws(NBDError)
    {
        var done = 0
        while done < buffer.count {
            let length = min(buffer.count - done, 32 << 20)
            try await next.read(
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + length)]),
                at: offset + UInt64(done), flags: [])
            done += length
        }
    }
}

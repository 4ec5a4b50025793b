import NBDCore

/// Where one file's data lies in a tar archive, found by walking the archive's headers from the
/// start, as `tar -t` does: each header is followed by its data, padded to 512 bytes.
struct TarEntry: Sendable, Hashable {
    /// Where the entry's data starts in the archive (just after its header).
    var offset: UInt64
    /// The entry's size.
    var size: UInt64

    /// The largest GNU long name or pax header this reads (GNU tar's own names are far shorter).
    static let maximumMetadataSize: UInt64 = 1 << 20

    /// Finds the first entry called `name` in the archive `next` serves.
    ///
    /// `limit` (nbdkit's `tar-limit`, 0 for none) bounds how far into the archive the search may
    /// read: an untrusted archive could otherwise make every connection walk a huge file.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the archive is not tar, is truncated or corrupt, does
    ///   not hold `name` (within `limit`), or holds it as something other than a regular file.
    static func find(_ name: String, in next: some BlockBackend, limit: UInt64) async throws(NBDError) -> TarEntry {
        let archiveSize = next.capabilities.size
        let block = UInt64(TarHeader.blockSize)
        var position: UInt64 = 0
        var longName: String? = nil
        var pax: [String: String] = [:]
        while true {
            if limit > 0 && position + block > limit {
                throw NBDError(
                    .invalidArgument,
                    "tar: '\(name)' is not in the first \(limit) bytes of the archive (tar-limit=\(limit)); raise tar-limit or check the name with 'tar tf'"
                )
            }
            guard position + block <= archiveSize else {
                throw NBDError(
                    .invalidArgument,
                    position == 0
                        ? "tar: not a tar archive: it is \(archiveSize) bytes, shorter than one tar header"
                        : "tar: the archive is truncated: it ends at offset \(archiveSize) without an end-of-archive marker, and '\(name)' was not found"
                )
            }
            let bytes = try await read(next, at: position, count: block)
            if TarHeader.isEndMarker(bytes) {
                throw NBDError(
                    .invalidArgument,
                    "tar: '\(name)' is not in the archive; tar-entry must match a name that 'tar tf' lists exactly")
            }
            let header = try TarHeader(bytes, at: position)
            let dataOffset = position + block
            var size = header.size
            if header.type != UInt8(ascii: "L"), header.type != UInt8(ascii: "x"), let text = pax["size"] {
                guard let value = UInt64(text) else {
                    throw NBDError(
                        .invalidArgument, "tar: the archive is corrupt: a pax size record is not a number ('\(text)')")
                }
                size = value
            }
            guard size <= archiveSize, dataOffset <= archiveSize - size else {
                throw NBDError(
                    .invalidArgument,
                    "tar: the archive is truncated or corrupt: the entry at offset \(position) has \(size) bytes of data, past the end of the archive (\(archiveSize) bytes)"
                )
            }
            switch header.type {
            case UInt8(ascii: "L"):
                // GNU long name: the data is the next entry's name.
                longName = TarHeader.string(
                    try await metadata(next, at: dataOffset, size: size, what: "GNU long name")[...])
            case UInt8(ascii: "x"):
                pax = try PaxRecords.parse(try await metadata(next, at: dataOffset, size: size, what: "pax header"))
            case UInt8(ascii: "g"), UInt8(ascii: "K"):
                // Global pax records and long link names say nothing about where an entry is.
                break
            default:
                let entryName = pax["path"] ?? longName ?? header.name
                if entryName == name {
                    return try check(header, pax: pax, name: name, offset: dataOffset, size: size)
                }
                longName = nil
                pax = [:]
            }
            let (padded, overflow) = ((size + block - 1) / block * block).addingReportingOverflow(dataOffset)
            guard !overflow else {
                throw NBDError(.invalidArgument, "tar: the archive is corrupt: an entry's size overflows")
            }
            position = padded
        }
    }

    /// The entry, when it is a regular file this filter can serve in place.
    private static func check(_ header: TarHeader, pax: [String: String], name: String, offset: UInt64, size: UInt64)
        throws(NBDError) -> TarEntry
    {
        switch header.type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
            // A pax-format sparse file stores a map, not the file's bytes, in its data.
            guard !pax.keys.contains(where: { $0.hasPrefix("GNU.sparse.") }) else {
                throw NBDError(
                    .invalidArgument,
                    "tar: '\(name)' is stored as a sparse file, which the tar filter cannot serve in place")
            }
            return TarEntry(offset: offset, size: size)
        case UInt8(ascii: "S"):
            throw NBDError(
                .invalidArgument,
                "tar: '\(name)' is stored as a GNU sparse file, which the tar filter cannot serve in place")
        case UInt8(ascii: "5"):
            throw NBDError(.invalidArgument, "tar: '\(name)' is a directory, not a file")
        case UInt8(ascii: "1"), UInt8(ascii: "2"):
            throw NBDError(.invalidArgument, "tar: '\(name)' is a link, not a file; name the file it points to")
        default:
            throw NBDError(
                .invalidArgument,
                "tar: '\(name)' is not a regular file (tar type '\(Character(Unicode.Scalar(header.type)))')")
        }
    }

    private static func metadata(_ next: some BlockBackend, at offset: UInt64, size: UInt64, what: String)
        async throws(NBDError) -> [UInt8]
    {
        guard size <= maximumMetadataSize else {
            throw NBDError(
                .invalidArgument,
                "tar: the archive is corrupt: a \(what) of \(size) bytes at offset \(offset) is implausibly large")
        }
        return try await read(next, at: offset, count: size)
    }

    private static func read(_ next: some BlockBackend, at offset: UInt64, count: UInt64) async throws(NBDError)
        -> [UInt8]
    {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(count), alignment: 16)
        defer { buffer.deallocate() }
        try await next.read(into: buffer, at: offset, flags: [])
        return Array(buffer)
    }
}

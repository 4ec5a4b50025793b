import NBDCore

/// Reads the members of an lzip file: each ends with a 20-byte trailer giving its uncompressed
/// size and its own size, so the members are found walking back from the end of the file, each
/// checked to start with an lzip header where its trailer says.
enum LzipIndex {
    static let format = "lzip"
    static let headerSize: UInt64 = 6
    static let trailerSize: UInt64 = 20
    /// The smallest valid member (lzip's own minimum: header, the shortest LZMA stream, trailer).
    static let minimumMemberSize: UInt64 = 36
    static let magic: [UInt8] = Array("LZIP".utf8)

    /// Reads the members of the lzip file that `next` serves.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the file is not lzip, is truncated, or a trailer or
    ///   header is corrupt (trailing data after the last member counts as corrupt, as in nbdkit).
    static func read(from next: some BlockBackend) async throws(NBDError) -> BlockIndex {
        let fileSize = next.capabilities.size
        let start = try await LayerBelow.bytes(
            of: next, at: 0, count: min(fileSize, headerSize), what: "the member header", format: format)
        guard start.count == Int(headerSize), start.prefix(4).elementsEqual(magic) else {
            throw NBDError(.invalidArgument, "lzip: not an lzip file: it does not start with the lzip magic bytes LZIP")
        }
        guard fileSize >= minimumMemberSize else {
            throw NBDError(
                .invalidArgument, "lzip: the file is truncated: \(fileSize) bytes, less than one lzip member")
        }
        var members: [CompressedBlock] = []
        var end = fileSize
        while end > 0 {
            guard end >= minimumMemberSize else {
                throw NBDError(
                    .invalidArgument,
                    "lzip: the file is truncated or corrupt: \(end) bytes before offset \(end) are not a member")
            }
            let trailer = try await LayerBelow.bytes(
                of: next, at: end - trailerSize, count: trailerSize, what: "a member trailer", format: format)
            let dataSize = littleEndian(trailer[4..<12])
            let memberSize = littleEndian(trailer[12..<20])
            guard memberSize >= minimumMemberSize, memberSize <= end else {
                throw NBDError(
                    .invalidArgument,
                    "lzip: the file is truncated or corrupt: the member trailer ending at offset \(end) gives an impossible member size (\(memberSize) bytes)"
                )
            }
            let memberStart = end - memberSize
            let header = try await LayerBelow.bytes(
                of: next, at: memberStart, count: headerSize, what: "a member header", format: format)
            guard header.prefix(4).elementsEqual(magic), header[4] == 1 else {
                throw NBDError(
                    .invalidArgument,
                    "lzip: the file is truncated or corrupt: no lzip member header at offset \(memberStart), where the trailer ending at \(end) says the member starts"
                )
            }
            members.append(
                CompressedBlock(
                    uncompressedOffset: 0, uncompressedSize: dataSize, compressedOffset: memberStart,
                    totalSize: memberSize))
            end = memberStart
        }
        return try BlockIndex(members.reversed(), format: format)
    }

    private static func littleEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

import NBDCore

/// One 512-byte tar header, with the fields the tar filter uses, each checked as it is read.
///
/// Understands the formats GNU tar writes and reads: v7, POSIX ustar (the `prefix` field), GNU
/// (base-256 sizes for entries of 8 GiB and more; long names in a preceding `L` entry) and pax (a
/// preceding `x` entry whose `path` and `size` records override the header's).
struct TarHeader {
    static let blockSize = 512

    /// The name in the header itself (ustar `prefix/name`, or `name`).
    var name: String
    /// The size field: how many bytes of data follow the header.
    var size: UInt64
    /// The type flag (`0` regular file, `5` directory, `L` GNU long name, `x` pax, ...).
    var type: UInt8

    /// Whether all 512 bytes are zero: the end-of-archive marker.
    static func isEndMarker(_ block: [UInt8]) -> Bool {
        block.allSatisfy { $0 == 0 }
    }

    /// Parses `block`, found at `offset` of the archive.
    ///
    /// - Throws: `NBDError` (`EINVAL`) when the checksum does not match (not a tar archive, or a
    ///   corrupted one) or a number field is not a number.
    init(_ block: [UInt8], at offset: UInt64) throws(NBDError) {
        precondition(block.count == Self.blockSize)
        let notTar = NBDError(
            .invalidArgument,
            offset == 0
                ? "tar: not a tar archive: the first header's checksum does not match"
                : "tar: the archive is corrupt: the header at offset \(offset) fails its checksum")
        guard let recorded = try? Self.number(block[148..<156], field: "checksum", at: offset) else { throw notTar }
        // The checksum is the sum of the header's bytes with the checksum field read as spaces.
        // Some old tars summed signed chars; GNU tar accepts both, so this does too.
        var unsignedSum: UInt64 = 0
        var signedSum: Int64 = 0
        for (position, byte) in block.enumerated() {
            let value = (148..<156).contains(position) ? UInt8(ascii: " ") : byte
            unsignedSum += UInt64(value)
            signedSum += Int64(Int8(bitPattern: value))
        }
        guard recorded == unsignedSum || Int64(bitPattern: recorded) == signedSum else { throw notTar }
        type = block[156]
        size = try Self.number(block[124..<136], field: "size", at: offset)
        let name = Self.string(block[0..<100])
        // POSIX ustar ("ustar\0") puts the leading directories in `prefix`; the GNU format
        // ("ustar  \0") uses those bytes for other things.
        let isPOSIX = block[257..<263].elementsEqual(Array("ustar".utf8) + [0])
        let prefix = isPOSIX ? Self.string(block[345..<500]) : ""
        self.name = prefix.isEmpty ? name : prefix + "/" + name
    }

    /// The text of a NUL-padded field.
    static func string(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// A number field: octal digits (space- or NUL-terminated, possibly space-led), or GNU's
    /// base-256 form (high bit of the first byte set) for values that octal cannot hold.
    static func number(_ bytes: ArraySlice<UInt8>, field: String, at offset: UInt64) throws(NBDError) -> UInt64 {
        let corrupt = NBDError(
            .invalidArgument,
            "tar: the archive is corrupt: the \(field) field of the header at offset \(offset) is not a number")
        guard let first = bytes.first else { throw corrupt }
        if first & 0x80 != 0 {
            // Base-256, big-endian; 0xFF marks a negative number, which no size or checksum is.
            guard first == 0x80 else { throw corrupt }
            var value: UInt64 = 0
            for byte in bytes.dropFirst() {
                guard value >> 56 == 0 else { throw corrupt }
                value = value << 8 | UInt64(byte)
            }
            return value
        }
        var value: UInt64 = 0
        var seenDigit = false
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value >> 60 == 0 else { throw corrupt }
                value = value << 3 | UInt64(byte - UInt8(ascii: "0"))
                seenDigit = true
            case UInt8(ascii: " ") where !seenDigit:
                continue
            case 0, UInt8(ascii: " "):
                return value
            default:
                throw corrupt
            }
        }
        return value
    }
}

import NBDCore

/// A LUKSv1 header (the first 592 bytes of the image), with every field checked against the format
/// and the image's size before anything uses it.
///
/// The layout is that of the LUKS on-disk format specification, version 1.2.3: big-endian integers,
/// NUL-padded strings, then eight key slots of 48 bytes. Parsing reads only the given bytes; it
/// derives nothing and never needs the passphrase, so it can be fuzzed on its own
/// (`Fuzz/LUKSHeader`).
struct LUKSHeader: Sendable, Hashable {
    /// `cipher-name`, such as `aes`.
    var cipherName: String
    /// `cipher-mode`, such as `xts-plain64`.
    var cipherMode: String
    /// `hash-spec`, such as `sha256`.
    var hashSpec: String
    /// Where the encrypted data starts, in bytes (the header stores sectors).
    var payloadOffset: UInt64
    /// The master key's length.
    var keyBytes: Int
    /// PBKDF2 of the master key, 20 bytes: how a candidate key is recognised.
    var masterKeyDigest: [UInt8]
    /// The salt of ``masterKeyDigest``, 32 bytes.
    var masterKeyDigestSalt: [UInt8]
    /// The iterations of ``masterKeyDigest``.
    var masterKeyDigestIterations: UInt32
    /// The volume's UUID as text (empty if the header has none).
    var uuid: String
    /// The eight key slots, in order.
    var keySlots: [LUKSKeySlot]
    /// The data cipher ``cipherName`` and ``cipherMode`` name.
    var cipher: LUKSCipherSpec
    /// The hash ``hashSpec`` names.
    var hash: LUKSHash

    /// The size of a LUKSv1 header.
    static let size = 592
    /// "LUKS" then 0xBA 0xBE.
    static let magic: [UInt8] = [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]
    /// The length of the master-key digest in every LUKSv1 header.
    static let digestSize = 20
    /// The longest key the header allows (nbdkit's bound too): far above any cipher's.
    static let maximumKeyBytes = 1024
    /// More stripes than any tool writes (they all use 4000); bounds the key material read.
    static let maximumStripes = 10_000

    /// Parses `bytes`, the start of an image of `imageSize` bytes (at most ``size`` are read; fewer
    /// when the image is that short).
    ///
    /// - Throws: `NBDError` (`EINVAL`) saying whether the image is not LUKS, a LUKS version other
    ///   than 1, truncated, or corrupt (and which field), or uses a cipher that is not supported.
    init(_ bytes: UnsafeRawBufferPointer, imageSize: UInt64) throws(NBDError) {
        guard bytes.count >= Self.magic.count, bytes.prefix(Self.magic.count).elementsEqual(Self.magic) else {
            throw NBDError(
                .invalidArgument,
                "luks: not a LUKS image: it does not start with the LUKS magic bytes 4C 55 4B 53 BA BE ('LUKS\\xba\\xbe')"
            )
        }
        guard bytes.count >= 8 else { throw Self.truncated(imageSize) }
        let version = UInt16(bytes[6]) << 8 | UInt16(bytes[7])
        guard version == 1 else {
            throw NBDError(
                .invalidArgument,
                version == 2
                    ? "luks: the image is LUKS version 2, which is not supported; only LUKSv1 is (make it with 'cryptsetup luksFormat --type luks1', or convert it with 'cryptsetup convert --type luks1')"
                    : "luks: the header is corrupt: unknown LUKS version \(version) (only version 1 is supported)")
        }
        guard bytes.count >= Self.size, imageSize >= UInt64(Self.size) else { throw Self.truncated(imageSize) }

        cipherName = try Self.string(bytes, at: 8, length: 32, field: "cipher-name")
        cipherMode = try Self.string(bytes, at: 40, length: 32, field: "cipher-mode")
        hashSpec = try Self.string(bytes, at: 72, length: 32, field: "hash-spec")
        let payloadSectors = Self.uint32(bytes, at: 104)
        let keyBytes = Self.uint32(bytes, at: 108)
        masterKeyDigest = Array(bytes[112..<132])
        masterKeyDigestSalt = Array(bytes[132..<164])
        masterKeyDigestIterations = Self.uint32(bytes, at: 164)
        uuid = (try? Self.string(bytes, at: 168, length: 40, field: "uuid", allowEmpty: true)) ?? ""

        guard keyBytes > 0, keyBytes <= Self.maximumKeyBytes else {
            throw Self.corrupt("key-bytes is \(keyBytes); a key is 1 to \(Self.maximumKeyBytes) bytes")
        }
        self.keyBytes = Int(keyBytes)
        guard masterKeyDigestIterations > 0 else { throw Self.corrupt("the master key digest's iteration count is 0") }
        payloadOffset = UInt64(payloadSectors) * UInt64(SectorCipher.sectorSize)
        guard payloadOffset >= UInt64(Self.size) else {
            throw Self.corrupt(
                "the encrypted data would start at offset \(payloadOffset), inside the header (payload-offset \(payloadSectors) sectors); detached headers are not supported"
            )
        }
        guard payloadOffset <= imageSize else {
            throw NBDError(
                .invalidArgument,
                "luks: the image is truncated: the header puts the encrypted data at offset \(payloadOffset), but the image is only \(imageSize) bytes"
            )
        }
        guard let hash = LUKSHash(named: hashSpec) else {
            throw NBDError(
                .invalidArgument,
                "luks: the image uses the hash '\(hashSpec)', which is not supported (supported: \(LUKSHash.allCases.map(\.rawValue).joined(separator: ", ")))"
            )
        }
        self.hash = hash
        cipher = try LUKSCipherSpec(name: cipherName, mode: cipherMode, keyBytes: Int(keyBytes))

        var slots: [LUKSKeySlot] = []
        for index in 0..<8 {
            slots.append(
                try Self.keySlot(
                    bytes, index: index, keyBytes: Int(keyBytes), payloadOffset: payloadOffset, imageSize: imageSize))
        }
        keySlots = slots
        guard slots.contains(where: \.isActive) else {
            throw NBDError(.invalidArgument, "luks: the image has no key slot in use, so no passphrase can open it")
        }
    }

    private static func keySlot(
        _ bytes: UnsafeRawBufferPointer, index: Int, keyBytes: Int, payloadOffset: UInt64, imageSize: UInt64
    ) throws(NBDError) -> LUKSKeySlot {
        let base = 208 + 48 * index
        let marker = uint32(bytes, at: base)
        guard marker == LUKSKeySlot.activeMarker || marker == LUKSKeySlot.inactiveMarker else {
            throw corrupt(
                "key slot \(index)'s state is 0x\(String(marker, radix: 16)), neither active (0xac71f3) nor free (0xdead)"
            )
        }
        let slot = LUKSKeySlot(
            index: index, isActive: marker == LUKSKeySlot.activeMarker, iterations: uint32(bytes, at: base + 4),
            salt: Array(bytes[(base + 8)..<(base + 40)]),
            keyMaterialOffset: UInt64(uint32(bytes, at: base + 40)) * UInt64(SectorCipher.sectorSize),
            stripes: Int(uint32(bytes, at: base + 44)))
        guard slot.isActive else { return slot }
        guard slot.iterations > 0 else { throw corrupt("key slot \(index)'s iteration count is 0") }
        guard slot.stripes > 0, slot.stripes <= maximumStripes else {
            throw corrupt(
                "key slot \(index) has \(slot.stripes) stripes (expected 1 to \(maximumStripes); tools write 4000)")
        }
        let end = slot.keyMaterialOffset + UInt64(slot.keyMaterialLength(keyBytes: keyBytes))
        guard slot.keyMaterialOffset >= UInt64(size) else {
            throw corrupt(
                "key slot \(index)'s key material starts at offset \(slot.keyMaterialOffset), inside the header")
        }
        guard end <= imageSize else {
            throw NBDError(
                .invalidArgument,
                "luks: the image is truncated: key slot \(index)'s key material ends at offset \(end), but the image is only \(imageSize) bytes"
            )
        }
        guard end <= payloadOffset else {
            throw corrupt(
                "key slot \(index)'s key material (offsets \(slot.keyMaterialOffset) to \(end)) overlaps the encrypted data, which starts at \(payloadOffset)"
            )
        }
        return slot
    }

    private static func truncated(_ imageSize: UInt64) -> NBDError {
        NBDError(
            .invalidArgument,
            "luks: the image is truncated: it is \(imageSize) bytes, shorter than a LUKSv1 header (\(size) bytes)")
    }

    private static func corrupt(_ what: String) -> NBDError {
        NBDError(.invalidArgument, "luks: the header is corrupt: \(what)")
    }

    private static func uint32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
            | UInt32(bytes[offset + 3])
    }

    /// A NUL-padded text field: printable ASCII, NUL-terminated within its length.
    private static func string(
        _ bytes: UnsafeRawBufferPointer, at offset: Int, length: Int, field: String, allowEmpty: Bool = false
    ) throws(NBDError) -> String {
        let raw = bytes[offset..<(offset + length)]
        guard let end = raw.firstIndex(of: 0) else { throw corrupt("\(field) is not NUL-terminated") }
        let text = raw[offset..<end]
        guard allowEmpty || !text.isEmpty else { throw corrupt("\(field) is empty") }
        guard text.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw corrupt("\(field) holds bytes that are not printable ASCII")
        }
        return String(decoding: text, as: UTF8.self)
    }
}

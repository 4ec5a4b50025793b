import Foundation
import NBDCore
import NBDTestSupport
import XCTest

@testable import NBDEncryptionFilters

/// The LUKSv1 header parser on headers written here field by field: every field that can be out
/// of range is refused with a message that says which, before any key is derived.
final class LUKSHeaderTests: XCTestCase {
    private static let imageSize: UInt64 = 4 << 20

    /// A valid header: aes-xts-plain64, sha256, 64-byte key, slot 0 active at sector 8, payload at
    /// sector 4096 (as cryptsetup writes it).
    private func validHeader() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: LUKSHeader.size)
        bytes.replaceSubrange(0..<6, with: LUKSHeader.magic)
        bytes[7] = 1
        put("aes", at: 8, in: &bytes)
        put("xts-plain64", at: 40, in: &bytes)
        put("sha256", at: 72, in: &bytes)
        put32(4096, at: 104, in: &bytes)
        put32(64, at: 108, in: &bytes)
        put32(1000, at: 164, in: &bytes)
        put("2d93a95e-fe11-4392-924b-17095970bd56", at: 168, in: &bytes)
        for slot in 0..<8 {
            let base = 208 + 48 * slot
            put32(slot == 0 ? LUKSKeySlot.activeMarker : LUKSKeySlot.inactiveMarker, at: base, in: &bytes)
            put32(slot == 0 ? 1000 : 0, at: base + 4, in: &bytes)
            put32(UInt32(8 + 512 * slot), at: base + 40, in: &bytes)
            put32(4000, at: base + 44, in: &bytes)
        }
        return bytes
    }

    private func put(_ text: String, at offset: Int, in bytes: inout [UInt8]) {
        bytes.replaceSubrange(offset..<(offset + text.utf8.count), with: Array(text.utf8))
    }

    private func put32(_ value: UInt32, at offset: Int, in bytes: inout [UInt8]) {
        for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (24 - 8 * index)) }
    }

    private func parse(_ bytes: [UInt8], imageSize: UInt64 = imageSize) throws(NBDError) -> LUKSHeader {
        do {
            return try bytes.withUnsafeBytes { try LUKSHeader($0, imageSize: imageSize) }
        } catch let error as NBDError {
            throw error
        } catch {
            preconditionFailure("LUKSHeader throws NBDError only")
        }
    }

    private func assertRefused(
        _ bytes: [UInt8], imageSize: UInt64 = imageSize, _ message: String, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        do {
            _ = try parse(bytes, imageSize: imageSize)
            XCTFail("accepted; expected: \(message)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.code, .invalidArgument, file: file, line: line)
            XCTAssertEqual(error.message, message, file: file, line: line)
        }
    }

    func testAValidHeaderParses() throws {
        let header = try parse(validHeader())
        XCTAssertEqual(header.cipher.description, "aes-xts-plain64")
        XCTAssertEqual(header.hash, .sha256)
        XCTAssertEqual(header.payloadOffset, 4096 * 512)
        XCTAssertEqual(header.keyBytes, 64)
        XCTAssertEqual(header.uuid, "2d93a95e-fe11-4392-924b-17095970bd56")
        XCTAssertEqual(header.keySlots.filter(\.isActive).map(\.index), [0])
        XCTAssertEqual(header.keySlots[0].keyMaterialOffset, 8 * 512)
        XCTAssertEqual(header.keySlots[0].keyMaterialLength(keyBytes: 64), 500 * 512)
    }

    func testAnImageOfAnotherFormatIsNotLUKS() {
        var bytes = validHeader()
        bytes[0] = 0x51  // "QUKS"
        assertRefused(
            bytes,
            "luks: not a LUKS image: it does not start with the LUKS magic bytes 4C 55 4B 53 BA BE ('LUKS\\xba\\xbe')")
        assertRefused(
            [], imageSize: 0,
            "luks: not a LUKS image: it does not start with the LUKS magic bytes 4C 55 4B 53 BA BE ('LUKS\\xba\\xbe')")
    }

    func testLUKS2AndUnknownVersionsAreRefused() {
        var bytes = validHeader()
        bytes[7] = 2
        assertRefused(
            bytes,
            "luks: the image is LUKS version 2, which is not supported; only LUKSv1 is (make it with 'cryptsetup luksFormat --type luks1', or convert it with 'cryptsetup convert --type luks1')"
        )
        bytes[7] = 9
        assertRefused(bytes, "luks: the header is corrupt: unknown LUKS version 9 (only version 1 is supported)")
    }

    func testTruncatedImagesAreRefused() {
        let bytes = validHeader()
        assertRefused(
            Array(bytes.prefix(300)), imageSize: 300,
            "luks: the image is truncated: it is 300 bytes, shorter than a LUKSv1 header (592 bytes)")
        assertRefused(
            bytes, imageSize: 1 << 20,
            "luks: the image is truncated: the header puts the encrypted data at offset 2097152, but the image is only 1048576 bytes"
        )
        var later = bytes
        put32(4000, at: 248, in: &later)  // slot 0's key material ends 200 KiB past the payload's start
        assertRefused(
            later, imageSize: 4096 * 512,
            "luks: the image is truncated: key slot 0's key material ends at offset 2304000, but the image is only 2097152 bytes"
        )
    }

    func testCorruptFieldsAreNamed() {
        let cases: [(String, (inout [UInt8]) -> Void, String)] = [
            ("key-bytes 0", { self.put32(0, at: 108, in: &$0) }, "key-bytes is 0; a key is 1 to 1024 bytes"),
            (
                "key-bytes huge", { self.put32(1 << 20, at: 108, in: &$0) },
                "key-bytes is 1048576; a key is 1 to 1024 bytes"
            ),
            ("digest iterations", { self.put32(0, at: 164, in: &$0) }, "the master key digest's iteration count is 0"),
            (
                "payload in header", { self.put32(1, at: 104, in: &$0) },
                "the encrypted data would start at offset 512, inside the header (payload-offset 1 sectors); detached headers are not supported"
            ),
            (
                "slot state", { self.put32(0x1234, at: 208 + 48, in: &$0) },
                "key slot 1's state is 0x1234, neither active (0xac71f3) nor free (0xdead)"
            ),
            ("slot iterations", { self.put32(0, at: 212, in: &$0) }, "key slot 0's iteration count is 0"),
            (
                "no stripes", { self.put32(0, at: 252, in: &$0) },
                "key slot 0 has 0 stripes (expected 1 to 10000; tools write 4000)"
            ),
            (
                "many stripes", { self.put32(20_000, at: 252, in: &$0) },
                "key slot 0 has 20000 stripes (expected 1 to 10000; tools write 4000)"
            ),
            (
                "material in header", { self.put32(1, at: 248, in: &$0) },
                "key slot 0's key material starts at offset 512, inside the header"
            ),
            (
                "material over payload", { self.put32(4000, at: 248, in: &$0) },
                "key slot 0's key material (offsets 2048000 to 2304000) overlaps the encrypted data, which starts at 2097152"
            ),
            (
                "unterminated", { $0.replaceSubrange(8..<40, with: repeatElement(0x61, count: 32)) },
                "cipher-name is not NUL-terminated"
            ),
            ("empty hash", { $0[72] = 0 }, "hash-spec is empty"),
            ("binary mode", { $0[41] = 0x07 }, "cipher-mode holds bytes that are not printable ASCII"),
        ]
        for (_, change, message) in cases {
            var bytes = validHeader()
            change(&bytes)
            assertRefused(bytes, "luks: the header is corrupt: \(message)")
        }
    }

    func testUnsupportedCiphersAndHashesAreNamed() {
        var bytes = validHeader()
        put("twofish", at: 8, in: &bytes)
        assertRefused(
            bytes, "luks: the image uses the cipher 'twofish', which is not supported (only aes is, as in nbdkit)")
        bytes = validHeader()
        put("ctr-plain64", at: 40, in: &bytes)
        assertRefused(
            bytes,
            "luks: the image uses the cipher mode 'ctr-plain64', which is not supported (supported: xts-plain64, xts-plain, cbc-plain64, cbc-plain, cbc-essiv:HASH)"
        )
        bytes = validHeader()
        put("xts-benbi\0\0", at: 40, in: &bytes)
        assertRefused(
            bytes,
            "luks: the image uses the IV generator 'benbi', which is not supported (supported: plain, plain64, essiv with a hash of 16, 24 or 32 bytes such as essiv:sha256)"
        )
        bytes = validHeader()
        put("whirlpool", at: 72, in: &bytes)
        assertRefused(
            bytes,
            "luks: the image uses the hash 'whirlpool', which is not supported (supported: md5, sha1, sha224, sha256, sha384, sha512)"
        )
        bytes = validHeader()
        put32(48, at: 108, in: &bytes)
        assertRefused(
            bytes,
            "luks: the header is corrupt or unsupported: aes-xts needs a key of 32 or 64 bytes, but key-bytes is 48")
    }

    func testAnImageWithNoActiveSlotCannotBeOpened() {
        var bytes = validHeader()
        put32(LUKSKeySlot.inactiveMarker, at: 208, in: &bytes)
        assertRefused(bytes, "luks: the image has no key slot in use, so no passphrase can open it")
    }

    /// The seeds of the libFuzzer target (a qemu-img header, a cryptsetup header and broken ones)
    /// go through its entry point, so `swift test` runs what the fuzzer starts from.
    func testTheFuzzCorpusReplays() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus/LUKSHeader")
        let files = try FileManager.default.contentsOfDirectory(at: corpus, includingPropertiesForKeys: nil)
        XCTAssertFalse(files.isEmpty)
        for file in files {
            let bytes = Array(try Data(contentsOf: file))
            bytes.withUnsafeBytes { LUKSFuzzEntryPoints.header($0) }
        }
        validHeader().withUnsafeBytes { LUKSFuzzEntryPoints.header($0) }
    }
}

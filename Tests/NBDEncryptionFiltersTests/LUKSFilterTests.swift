import Foundation
import NBDBackends
import NBDCore
import NBDTestSupport
import XCTest

@testable import NBDEncryptionFilters

/// The luks filter over images cryptsetup formats at test time, checked against qemu-img's own LUKS
/// driver in both directions: what qemu-img writes, the filter reads; what the filter writes
/// (whole sectors, partial sectors, zeroes), qemu-img reads.
final class LUKSFilterTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try ToolRunner.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func layer() -> LUKSLayer { LUKSLayer(passphrase: LUKSImage.passphrase) }

    func testEveryCipherReadsWhatQemuWroteAndWritesWhatQemuReads() async throws {
        let ciphers: [(String, Int, String)] = [
            ("aes-xts-plain64", 512, "sha256"), ("aes-xts-plain64", 256, "sha1"), ("aes-xts-plain", 512, "sha512"),
            ("aes-cbc-essiv:sha256", 256, "sha256"), ("aes-cbc-plain", 128, "sha1"), ("aes-cbc-plain64", 256, "sha256"),
        ]
        for (index, (cipher, bits, hash)) in ciphers.enumerated() {
            let what = "\(cipher) \(bits)-bit \(hash)"
            let url = try LUKSImage.cryptsetup(
                "image\(index).img", cipher: cipher, keyBits: bits, hash: hash, in: directory)
            let plain = ToolRunner.sampleData(size: 1 << 20, seed: UInt64(index + 1))
            try LUKSImage.qemuWrite(plain, into: url, in: directory)

            let below = try await LUKSImage.backend(url)
            let export = try await layer().wrap(AnyBlockBackend(below), for: ConnectionInfo())
            let payloadSize = export.capabilities.size
            let payloadOffset = try await header(of: below).payloadOffset
            XCTAssertEqual(payloadSize, below.capabilities.size - payloadOffset, what)
            let read = try await export.readBytes(plain.count, at: 0)
            XCTAssertTrue(read == plain, "\(what): the filter does not read what qemu-img wrote")

            let written = ToolRunner.sampleData(size: 300 * 512, seed: UInt64(100 + index))
            try await export.writeBytes(written, at: 4096)
            try await LUKSImage.save(below, to: url)
            let decrypted = try LUKSImage.qemuRead(url, in: directory)
            var expected = plain
            expected.replaceSubrange(4096..<(4096 + written.count), with: written)
            XCTAssertEqual(decrypted.count, Int(payloadSize), what)
            XCTAssertTrue(
                Array(decrypted.prefix(plain.count)) == expected,
                "\(what): qemu-img does not read what the filter wrote")
        }
    }

    func testPartialSectorReadsWritesAndZeroesKeepTheBytesAround() async throws {
        let url = try LUKSImage.cryptsetup("partial.img", in: directory)
        let below = try await LUKSImage.backend(url)
        let export = try await layer().wrap(AnyBlockBackend(below), for: ConnectionInfo())
        var model = ToolRunner.sampleData(size: 64 << 10, seed: 9)
        try await export.writeBytes(model, at: 0)

        let pieces: [(offset: Int, count: Int)] = [
            (1, 1), (511, 2), (700, 5000), (8192, 512), (10_000, 100), (65_535, 1),
        ]
        for (number, piece) in pieces.enumerated() {
            let bytes = [UInt8](repeating: UInt8(number + 1), count: piece.count)
            try await export.writeBytes(bytes, at: UInt64(piece.offset))
            model.replaceSubrange(piece.offset..<(piece.offset + piece.count), with: bytes)
        }
        try await export.zero(count: 1000, at: 20_001, flags: [])
        model.replaceSubrange(20_001..<21_001, with: repeatElement(0, count: 1000))
        try await export.zero(count: 4096, at: 32_768, flags: [])
        model.replaceSubrange(32_768..<36_864, with: repeatElement(0, count: 4096))

        for (offset, count) in [(0, 65_536), (3, 7), (510, 3), (19_999, 1500), (65_000, 536)] {
            let read = try await export.readBytes(count, at: UInt64(offset))
            XCTAssertTrue(read == Array(model[offset..<(offset + count)]), "read of \(count) at \(offset)")
        }
        try await LUKSImage.save(below, to: url)
        let decrypted = try LUKSImage.qemuRead(url, in: directory)
        XCTAssertTrue(Array(decrypted.prefix(model.count)) == model, "qemu-img reads something else")
    }

    /// A zero request is not bounded by the payload limit (with extended headers it may exceed
    /// 4 GiB): an unaligned one must not be read-modify-written as one buffer of its size, only its
    /// partial first and last sectors; the sectors between go down in bounded pieces.
    func testALargeUnalignedZeroIsWrittenInBoundedPieces() async throws {
        let url = try LUKSImage.cryptsetup("bigzero.img", megabytes: 7, in: directory)
        let image = Array(try Data(contentsOf: url))
        let below = try await MemoryBackendProvider(size: UInt64(image.count)).open(ConnectionInfo())
        try await below.writeBytes(image, at: 0)
        let log = OperationLog()
        let export = try await layer().wrap(
            AnyBlockBackend(RecordingFilter(wrapping: below, log: log, connection: 1)), for: ConnectionInfo())
        let size = Int(export.capabilities.size)
        let ends = [UInt8](repeating: 0xA5, count: 4096)
        try await export.writeBytes(ends, at: 0)
        try await export.writeBytes(ends, at: UInt64(size - 4096))
        log.reset()

        let start = 300
        let count = size - 1000
        try await export.zero(count: UInt64(count), at: UInt64(start), flags: [])
        let writes = log.all.filter { $0.command == .write }
        XCTAssertGreaterThan(writes.count, 2)
        XCTAssertLessThanOrEqual(
            writes.map(\.count).max() ?? 0, UInt64(SectorCipher.scratchLimit),
            "a write below is sized by the zero request: \(writes.map(\.count))")
        let head = try await export.readBytes(4096, at: 0)
        XCTAssertTrue(head == Array(ends[..<start]) + [UInt8](repeating: 0, count: 4096 - start))
        let tail = try await export.readBytes(4096, at: UInt64(size - 4096))
        XCTAssertTrue(tail == [UInt8](repeating: 0, count: 4096 - 700) + Array(ends[..<700]))
        let middle = try await export.readBytes(1 << 20, at: UInt64(size / 2))
        XCTAssertTrue(middle.allSatisfy { $0 == 0 })
    }

    func testCapabilitiesHideTheHeaderAndOfferNoTrimOrExtents() async throws {
        let url = try LUKSImage.cryptsetup("caps.img", in: directory)
        let below = try await LUKSImage.backend(url)
        let export = try await layer().wrap(AnyBlockBackend(below), for: ConnectionInfo())
        let caps = export.capabilities
        XCTAssertEqual(caps.size, (4 << 20) - 4096 * 512, "cryptsetup puts the data 2 MiB in")
        XCTAssertFalse(caps.canTrim)
        XCTAssertFalse(caps.canFastZero)
        XCTAssertFalse(caps.canExtents)
        XCTAssertTrue(caps.canZero)
        XCTAssertEqual(caps.blockSize.minimum, 512)
        XCTAssertFalse(caps.blockSize.isEnforced, "unaligned requests are served by read-modify-write, as in nbdkit")
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await export.zero(count: 512, at: 0, flags: .fastZero) },
            code: .notSupported)
    }

    func testAWrongPassphraseIsRefusedWithPermissionDenied() async throws {
        let url = try LUKSImage.cryptsetup("wrong.img", in: directory)
        let below = try await LUKSImage.backend(url)
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in
                try await LUKSLayer(passphrase: "not it").wrap(AnyBlockBackend(below), for: ConnectionInfo())
            },
            code: .notPermitted)
        XCTAssertEqual(error?.message, "luks: the passphrase is wrong: it opens none of the image's 1 active key slot")
    }

    func testTheUnlockedVolumeIsReusedOnlyWhileTheHeaderIsUnchanged() async throws {
        let url = try LUKSImage.cryptsetup("reuse.img", in: directory)
        let below = try await LUKSImage.backend(url)
        let layer = layer()
        let first = try await layer.open(below)
        let second = try await layer.open(below)
        XCTAssertTrue(first === second, "a second connection unlocks again")
        // A changed UUID is a different header: it is unlocked afresh (and still opens).
        try await below.writeBytes(Array("00000000-0000-0000-0000-000000000000".utf8), at: 168)
        let third = try await layer.open(below)
        XCTAssertFalse(first === third)
        XCTAssertEqual(third.keySlot, 0)
    }

    func testThePassphraseParameterTakesNbdkitsSecretForms() async throws {
        let url = try LUKSImage.cryptsetup("param.img", in: directory)
        let below = try await LUKSImage.backend(url)
        let file = directory.appendingPathComponent("secret")
        try Data((LUKSImage.passphrase + "\n").utf8).write(to: file)
        let fromFile = try LUKSLayer(parameters: ParameterValues([.init(key: "passphrase", value: "+" + file.path)]))
        _ = try await fromFile.wrap(AnyBlockBackend(below), for: ConnectionInfo())

        var descriptors: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&descriptors), 0)
        let text = Array(LUKSImage.passphrase.utf8)
        XCTAssertEqual(Glibc.write(descriptors[1], text, text.count), text.count)
        close(descriptors[1])
        let fromDescriptor = try LUKSLayer(
            parameters: ParameterValues([.init(key: "passphrase", value: "-\(descriptors[0])")]))
        _ = try await fromDescriptor.wrap(AnyBlockBackend(below), for: ConnectionInfo())

        XCTAssertThrowsError(try LUKSLayer(parameters: ParameterValues())) { error in
            XCTAssertEqual(
                (error as? NBDError)?.message, "passphrase=... is required, for example passphrase=+/run/secret")
        }
    }

    private func header(of below: TestMemoryBackend) async throws -> LUKSHeader {
        let bytes = try await below.readBytes(LUKSHeader.size, at: 0)
        return try bytes.withUnsafeBytes { try LUKSHeader($0, imageSize: below.capabilities.size) }
    }
}

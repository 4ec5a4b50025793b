import NBDClient
import NBDCore
import NBDWire
import XCTest

/// The reply parser with extended headers (`NBD_OPT_EXTENDED_HEADERS`), byte for byte: every
/// extended form it accepts and every rule whose breach closes the connection.
final class ExtendedReplyParserTests: XCTestCase {
    private let read = RequestRecord(command: .read, offset: 4096, length: 1024, flags: [])
    /// Block status of 6 GiB: only extended headers can ask for it in one request.
    private let status = RequestRecord(command: .blockStatus, offset: 1 << 30, length: 6 << 30, flags: [])
    private let zero = RequestRecord(command: .writeZeroes, offset: 0, length: 5 << 30, flags: [])
    private let statusOne = RequestRecord(command: .blockStatus, offset: 0, length: 8192, flags: .requestOne)

    private func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    /// An extended reply chunk: magic, flags, type, cookie, offset, 64-bit length, payload.
    private func chunk(
        _ cookie: UInt64, _ type: UInt16, offset: UInt64, _ payload: [UInt8], done: Bool = true, length: UInt64? = nil
    ) -> [UInt8] {
        be(UInt32(0x6e8a_278c)) + be(UInt16(done ? 1 : 0)) + be(type) + be(cookie) + be(offset)
            + be(length ?? UInt64(payload.count)) + payload
    }

    private func extents(context: UInt32 = 7, count: UInt32? = nil, _ list: [(UInt64, UInt64)]) -> [UInt8] {
        be(context) + be(count ?? UInt32(list.count)) + list.flatMap { be($0.0) + be($0.1) }
    }

    private func parse(_ bytes: [UInt8], extended: Bool = true) throws(NBDError) -> ReplyParser.Outcome {
        let parser = ReplyParser(structuredReplies: true, allocationContextID: 7, extendedHeaders: extended)
        let requests: [UInt64: RequestRecord] = [1: read, 2: status, 3: zero, 4: statusOne]
        var result: Result<ReplyParser.Outcome, NBDError>!
        bytes.withUnsafeBytes { raw in
            result = Result { () throws(NBDError) in try parser.parse(raw) { requests[$0] } }
        }
        return try result.get()
    }

    func testExtendedHeadersImplyStructuredReplies() {
        XCTAssertTrue(
            ReplyParser(structuredReplies: false, allocationContextID: nil, extendedHeaders: true).structuredReplies)
    }

    func testPartialHeadersAskForTheExtendedHeaderThenThePayload() throws {
        let data = chunk(1, 1, offset: 4096, be(UInt64(4096)) + [1, 2])
        XCTAssertEqual(try parse(Array(data[0..<20])), .needMore(32))
        XCTAssertEqual(try parse(Array(data[0..<36])), .needMore(40))
        let bs = chunk(2, 6, offset: 1 << 30, extents([(4096, 0)]))
        XCTAssertEqual(try parse(Array(bs[0..<40])), .needMore(56))
    }

    func testNoneChunkAnswersAZeroOfFiveGiB() throws {
        XCTAssertEqual(try parse(chunk(3, 0, offset: 0, [])), .event(.none(cookie: 3), consumed: 32, payload: 0))
    }

    func testDataAndHoleChunksKeepTheirPayloadOffsets() throws {
        let data = try parse(
            chunk(1, 1, offset: 4096, be(UInt64(4096 + 100)) + [UInt8](repeating: 1, count: 24), done: false))
        XCTAssertEqual(data, .event(.data(cookie: 1, position: 100, count: 24, done: false), consumed: 40, payload: 24))
        let hole = try parse(chunk(1, 2, offset: 4096, be(UInt64(4096 + 512)) + be(UInt32(512))))
        XCTAssertEqual(hole, .event(.hole(cookie: 1, position: 512, count: 512, done: true), consumed: 44, payload: 0))
    }

    func testSixtyFourBitExtentsAreClippedToTheRequest() throws {
        // 5 GiB of hole, then 4 GiB of data of which only 1 GiB was asked for.
        let outcome = try parse(chunk(2, 6, offset: 1 << 30, extents([(5 << 30, 3), (4 << 30, 0)])))
        XCTAssertEqual(
            outcome,
            .event(
                .blockStatus(cookie: 2, extents: [.hole(5 << 30), .data(1 << 30)], done: true), consumed: 32 + 8 + 32,
                payload: 0))
        let one = try parse(chunk(4, 6, offset: 0, extents([(100, 0), (200, 3)])))
        XCTAssertEqual(
            one, .event(.blockStatus(cookie: 4, extents: [.data(100)], done: true), consumed: 72, payload: 0))
    }

    func testErrorChunksKeepTheirForm() throws {
        let message = Array("no space".utf8)
        let outcome = try parse(
            chunk(3, 0x8001, offset: 0, be(UInt32(28)) + be(UInt16(UInt16(message.count))) + message))
        XCTAssertEqual(
            outcome,
            .event(.error(cookie: 3, errno: 28, message: "no space", done: true), consumed: 32 + 14, payload: 0))
    }

    func testViolationsThrowEIO() {
        let cases: [([UInt8], Bool, String)] = [
            // Compact replies after extended headers were negotiated, and the reverse.
            (be(UInt32(0x6744_6698)) + be(UInt32(0)) + be(UInt64(3)), true, "compact simple reply"),
            (
                be(UInt32(0x668e_33ef)) + be(UInt16(1)) + be(UInt16(0)) + be(UInt64(3)) + be(UInt32(0)), true,
                "compact structured reply chunk"
            ),
            (chunk(3, 0, offset: 0, []), false, "extended headers were not negotiated"),
            // The header's own rules.
            (chunk(3, 0, offset: 512, []), true, "offset 512 to the zero at offset 0"),
            (chunk(9, 0, offset: 0, []), true, "cookie 0x9"),
            (chunk(3, 0, offset: 0, [], length: 1 << 32), true, "more than 32 bits"),
            (chunk(3, 0, offset: 0, [1]), true, "NBD_REPLY_TYPE_NONE chunk with 1"),
            (chunk(3, 0, offset: 0, [], done: false), true, "without the DONE flag"),
            // Block status forms.
            (
                chunk(2, 5, offset: 1 << 30, be(UInt32(7)) + be(UInt32(4096)) + be(UInt32(0))), true,
                "32-bit block status chunk"
            ),
            (chunk(2, 6, offset: 1 << 30, extents(count: 2, [(4096, 0)])), true, "descriptor count 2 disagrees"),
            (chunk(2, 6, offset: 1 << 30, extents(count: 0, [(4096, 0)])), true, "descriptor count 0 disagrees"),
            (chunk(2, 6, offset: 1 << 30, extents([(4096, 0)]) + [0, 0, 0, 0]), true, "8 + 16 per extent"),
            (chunk(2, 6, offset: 1 << 30, be(UInt32(7)) + be(UInt32(0))), true, "8 + 16 per extent"),
            (chunk(2, 6, offset: 1 << 30, extents([(0, 0)])), true, "extent of length 0"),
            (chunk(2, 6, offset: 1 << 30, extents(context: 8, [(4096, 0)])), true, "context id 8"),
            (chunk(2, 6, offset: 1 << 30, extents([(4096, 1 << 32)])), true, "wider than 32 bits"),
            (chunk(1, 6, offset: 4096, extents([(4096, 0)])), true, "block status chunk in reply to a read"),
            // Content chunks outside the request.
            (chunk(1, 2, offset: 4096, be(UInt64(5000)) + be(UInt32(200))), true, "outside the request"),
            (
                chunk(1, 1, offset: 4096, be(UInt64(4096)) + [UInt8](repeating: 0, count: 1025)), true,
                "outside the request"
            ),
            (chunk(3, 1, offset: 0, be(UInt64(0)) + [1]), true, "data chunk in reply to a zero"),
        ]
        for (bytes, extended, text) in cases {
            XCTAssertThrowsError(try parse(bytes, extended: extended), text) { error in
                let error = error as! NBDError
                XCTAssertEqual(error.code, .ioError)
                XCTAssertTrue(error.message.contains(text), "\(error.message) should mention \(text)")
                XCTAssertTrue(error.message.contains("protocol violation"), error.message)
            }
        }
    }

    func testProgressCompletesALargeZeroAndSixtyFourBitBlockStatus() throws {
        var zeroing = ReplyProgress(request: zero)
        guard case .success = try zeroing.accept(.none(cookie: 3)) else { return XCTFail("the zero should succeed") }
        var querying = ReplyProgress(request: status)
        XCTAssertNil(try querying.accept(.blockStatus(cookie: 2, extents: [.hole(5 << 30)], done: false)))
        guard case .success(let list) = try querying.accept(.none(cookie: 2)) else { return XCTFail("should succeed") }
        XCTAssertEqual(list, [.hole(5 << 30)])
    }
}

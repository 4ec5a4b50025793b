import NBDClient
import NBDCore
import NBDWire
import XCTest

/// The pure reply parser and reply progress, byte for byte.
final class ReplyParserTests: XCTestCase {
    private let read = RequestRecord(command: .read, offset: 4096, length: 1024, flags: [])
    private let status = RequestRecord(command: .blockStatus, offset: 0, length: 8192, flags: [])

    private func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    private func chunk(_ cookie: UInt64, _ type: UInt16, _ payload: [UInt8], done: Bool = true) -> [UInt8] {
        be(UInt32(0x668e_33ef)) + be(UInt16(done ? 1 : 0)) + be(type) + be(cookie) + be(UInt32(payload.count)) + payload
    }

    private func parse(_ bytes: [UInt8], structured: Bool = true) throws(NBDError) -> ReplyParser.Outcome {
        let parser = ReplyParser(structuredReplies: structured, allocationContextID: 7)
        let requests: [UInt64: RequestRecord] = [1: read, 2: status]
        var result: Result<ReplyParser.Outcome, NBDError>!
        bytes.withUnsafeBytes { raw in
            result = Result { () throws(NBDError) in try parser.parse(raw) { requests[$0] } }
        }
        return try result.get()
    }

    func testPartialHeadersAskForMoreBytes() throws {
        XCTAssertEqual(try parse([0x66]), .needMore(4))
        XCTAssertEqual(try parse(Array(chunk(1, 1, be(UInt64(4096)) + [1, 2])[0..<12])), .needMore(20))
        XCTAssertEqual(try parse(Array(chunk(1, 1, be(UInt64(4096)) + [1, 2])[0..<24])), .needMore(28))
    }

    func testDataChunkLeavesItsPayloadToTheCaller() throws {
        let outcome = try parse(chunk(1, 1, be(UInt64(4096 + 100)) + [UInt8](repeating: 1, count: 24), done: false))
        XCTAssertEqual(
            outcome, .event(.data(cookie: 1, position: 100, count: 24, done: false), consumed: 28, payload: 24))
    }

    func testBlockStatusIsClippedToTheRequest() throws {
        let outcome = try parse(
            chunk(2, 5, be(UInt32(7)) + be(UInt32(4096)) + be(UInt32(3)) + be(UInt32(65536)) + be(UInt32(0))))
        XCTAssertEqual(
            outcome,
            .event(.blockStatus(cookie: 2, extents: [.hole(4096), .data(4096)], done: true), consumed: 40, payload: 0))
    }

    func testViolationsThrowEIO() {
        let cases: [([UInt8], String)] = [
            (be(UInt32(0x1234_5678)) + [UInt8](repeating: 0, count: 12), "bad magic"),
            (chunk(9, 0, []), "cookie 0x9"),
            (chunk(1, 5, be(UInt32(7)) + be(UInt32(1)) + be(UInt32(0))), "block status chunk in reply to a read"),
            (chunk(2, 5, be(UInt32(8)) + be(UInt32(1)) + be(UInt32(0))), "context id 8"),
            (chunk(2, 5, be(UInt32(7)) + be(UInt32(0)) + be(UInt32(0))), "extent of length 0"),
            (chunk(1, 2, be(UInt64(5000)) + be(UInt32(200))), "outside the request"),
            (chunk(1, 0, [1]), "NBD_REPLY_TYPE_NONE chunk with 1"),
            (chunk(1, 0, [], done: false), "without the DONE flag"),
            (chunk(1, 0x8001, be(UInt32(0)) + be(UInt16(0))), "error value 0"),
            (chunk(1, 77, []), "unknown type 77"),
        ]
        for (bytes, text) in cases {
            XCTAssertThrowsError(try parse(bytes), text) { error in
                let error = error as! NBDError
                XCTAssertEqual(error.code, .ioError)
                XCTAssertTrue(error.message.contains(text), "\(error.message) should mention \(text)")
            }
        }
        XCTAssertThrowsError(try parse(chunk(1, 0, []), structured: false), "chunk without structured replies")
    }

    func testProgressNeedsTheWholeReadAndKeepsTheFirstError() throws {
        var progress = ReplyProgress(request: read)
        XCTAssertNil(try progress.accept(.data(cookie: 1, position: 0, count: 512, done: false)))
        XCTAssertThrowsError(try progress.accept(.none(cookie: 1)), "only 512 of 1024 bytes")

        var failing = ReplyProgress(request: read)
        XCTAssertNil(try failing.accept(.error(cookie: 1, errno: 28, message: "first", done: false)))
        XCTAssertNil(try failing.accept(.error(cookie: 1, errno: 5, message: "second", done: false)))
        guard case .failure(let error) = try failing.accept(.none(cookie: 1)) else { return XCTFail("should fail") }
        XCTAssertEqual(error, NBDError(.noSpace, "first"))

        var overlapping = ReplyProgress(request: read)
        XCTAssertNil(try overlapping.accept(.hole(cookie: 1, position: 0, count: 1024, done: false)))
        XCTAssertThrowsError(try overlapping.accept(.hole(cookie: 1, position: 0, count: 1, done: true)))
    }

    func testUnknownWireErrnoReadsAsEINVAL() throws {
        var progress = ReplyProgress(request: read)
        guard case .failure(let error) = try progress.accept(.simple(cookie: 1, error: 4242)) else { return XCTFail() }
        XCTAssertEqual(error.code, .invalidArgument)
    }
}

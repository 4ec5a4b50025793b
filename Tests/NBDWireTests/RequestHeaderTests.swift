import NBDCore
import NBDWire
import XCTest

/// The request header both sides use: the client stores it, the server parses it.
final class RequestHeaderTests: XCTestCase {
    func testAStoredHeaderHasTheProtocolLayoutAndParsesBack() {
        let header = RequestHeader(
            flags: CommandFlags.fua.rawValue, type: Command.writeZeroes.rawValue, cookie: 0x0102_0304_0506_0708,
            offset: 0x1122_3344_5566_7788, length: 0x99AA_BBCC)
        var bytes = [UInt8](repeating: 0, count: ProtocolConstants.requestHeaderSize)
        bytes.withUnsafeMutableBytes { header.store(into: $0) }
        XCTAssertEqual(
            bytes,
            [
                0x25, 0x60, 0x95, 0x13,  // NBD_REQUEST_MAGIC
                0x00, 0x01,  // flags: FUA
                0x00, 0x06,  // NBD_CMD_WRITE_ZEROES
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // cookie
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  // offset
                0x99, 0xAA, 0xBB, 0xCC,  // length
            ])
        let parsed = bytes.withUnsafeBytes { RequestHeader(parsing: $0) }
        XCTAssertEqual(parsed.magic, ProtocolConstants.requestMagic)
        XCTAssertEqual(parsed.flags, header.flags)
        XCTAssertEqual(parsed.type, header.type)
        XCTAssertEqual(parsed.cookie, header.cookie)
        XCTAssertEqual(parsed.offset, header.offset)
        XCTAssertEqual(parsed.length, header.length)
    }

    func testAnExtendedHeaderHasA64BitLengthAndTheExtendedMagic() {
        let header = RequestHeader(
            flags: ProtocolConstants.commandFlagPayloadLength, type: Command.write.rawValue, cookie: 7,
            offset: 0x1122_3344_5566_7788, length: 0x0000_0001_0000_0200, extended: true)
        var bytes = [UInt8](repeating: 0, count: ProtocolConstants.extendedRequestHeaderSize)
        bytes.withUnsafeMutableBytes { header.storeExtended(into: $0) }
        XCTAssertEqual(
            bytes,
            [
                0x21, 0xE4, 0x1C, 0x71,  // NBD_EXTENDED_REQUEST_MAGIC
                0x00, 0x20,  // flags: PAYLOAD_LEN
                0x00, 0x01,  // NBD_CMD_WRITE
                0, 0, 0, 0, 0, 0, 0, 7,  // cookie
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  // offset
                0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x02, 0x00,  // 64-bit length
            ])
        let parsed = bytes.withUnsafeBytes { RequestHeader(parsingExtended: $0) }
        XCTAssertEqual(parsed.magic, ProtocolConstants.extendedRequestMagic)
        XCTAssertEqual(parsed.flags, header.flags)
        XCTAssertEqual(parsed.length, 0x0000_0001_0000_0200)
        XCTAssertEqual(parsed.offset, header.offset)
    }

    func testAServerErrnoOutsideTheProtocolsEightReadsAsEINVAL() {
        XCTAssertEqual(NBDError.Code(wireErrno: 28), .noSpace)
        XCTAssertEqual(NBDError.Code(wireErrno: 108), .shutdown)
        XCTAssertEqual(NBDError.Code(wireErrno: 2), .invalidArgument)
    }
}

import NBDCore
import NBDTestSupport
import XCTest

final class RequestValidatorTests: XCTestCase {
    let validator = RequestValidator(
        capabilities: Capabilities(size: 1 << 20, cache: .emulated, canExtents: true), structuredReplies: true)

    private func code(
        _ validator: RequestValidator, _ command: Command, _ offset: UInt64, _ length: UInt64, _ flags: CommandFlags = []
    ) -> NBDError.Code? {
        do {
            try validator.validate(command, offset: offset, length: length, flags: flags)
            return nil
        } catch {
            return error.code
        }
    }

    func testValidRequestsPass() {
        XCTAssertNil(code(validator, .read, 0, 4096))
        XCTAssertNil(code(validator, .write, (1 << 20) - 512, 512, .fua))
        XCTAssertNil(code(validator, .writeZeroes, 0, 1 << 20, [.noHole, .fastZero, .fua]))
        XCTAssertNil(code(validator, .trim, 0, 1))
        XCTAssertNil(code(validator, .flush, 0, 0))
        XCTAssertNil(code(validator, .cache, 0, 100))
        XCTAssertNil(code(validator, .blockStatus, 10, 100, .requestOne))
        XCTAssertNil(code(validator, .read, 0, 512, .dontFragment))
    }

    func testOutOfRangeWritesAreNoSpaceAndOtherOutOfRangeRequestsAreInvalid() {
        XCTAssertEqual(code(validator, .write, 1 << 20, 1), .noSpace)
        XCTAssertEqual(code(validator, .writeZeroes, (1 << 20) - 1, 2), .noSpace)
        XCTAssertEqual(code(validator, .read, (1 << 20) - 1, 2), .invalidArgument)
        XCTAssertEqual(code(validator, .trim, 1 << 20, 1), .invalidArgument)
        XCTAssertEqual(code(validator, .cache, UInt64.max, 2), .invalidArgument, "offset + length overflows")
        XCTAssertEqual(code(validator, .read, 0, 0), .invalidArgument)
    }

    func testReadOnlyExportsRefuseWritesWithEPERM() {
        let readOnly = RequestValidator(capabilities: Capabilities(size: 4096).readOnly)
        XCTAssertEqual(code(readOnly, .write, 0, 1), .notPermitted)
        XCTAssertEqual(code(readOnly, .trim, 0, 1), .notPermitted)
        XCTAssertEqual(code(readOnly, .writeZeroes, 0, 1), .notPermitted)
        XCTAssertNil(code(readOnly, .read, 0, 1))
    }

    func testMisalignedRequestsAreInvalid() {
        let aligned = RequestValidator(
            capabilities: Capabilities(size: 1 << 20, blockSize: BlockSizeConstraints(minimum: 512)))
        XCTAssertEqual(code(aligned, .read, 1, 512), .invalidArgument)
        XCTAssertEqual(code(aligned, .write, 0, 100), .invalidArgument)
        XCTAssertNil(code(aligned, .read, 512, 1024))
    }

    func testUnadvertisedCommandsAndMisplacedFlagsAreInvalid() {
        let bare = RequestValidator(
            capabilities: Capabilities(size: 4096, canFlush: false, fua: .none, canTrim: false, canZero: false, canFastZero: false))
        XCTAssertEqual(code(bare, .flush, 0, 0), .invalidArgument)
        XCTAssertEqual(code(bare, .write, 0, 1, .fua), .invalidArgument)
        XCTAssertEqual(code(bare, .trim, 0, 1), .invalidArgument)
        XCTAssertEqual(code(bare, .writeZeroes, 0, 1), .invalidArgument)
        XCTAssertEqual(code(bare, .cache, 0, 1), .invalidArgument)
        XCTAssertEqual(code(bare, .blockStatus, 0, 1), .invalidArgument)
        XCTAssertEqual(code(validator, .read, 0, 1, .noHole), .invalidArgument)
        XCTAssertEqual(code(validator, .write, 0, 1, .requestOne), .invalidArgument)
        XCTAssertEqual(code(validator, .write, 0, 1, CommandFlags(rawValue: 1 << 9)), .invalidArgument)
        XCTAssertEqual(code(RequestValidator(capabilities: Capabilities(size: 4096)), .read, 0, 1, .dontFragment), .invalidArgument)
    }

    func testFlushWithOffsetOrLengthIsInvalid() {
        XCTAssertEqual(code(validator, .flush, 1, 0), .invalidArgument)
        XCTAssertEqual(code(validator, .flush, 0, 1), .invalidArgument)
    }

    func testPayloadAboveTheMaximumIsInvalid() {
        let small = RequestValidator(
            capabilities: Capabilities(size: 1 << 30, blockSize: BlockSizeConstraints(maximumPayload: 1 << 20)))
        XCTAssertEqual(code(small, .read, 0, (1 << 20) + 1), .invalidArgument)
        XCTAssertNil(code(small, .writeZeroes, 0, 1 << 24), "zero has no payload")
    }
}

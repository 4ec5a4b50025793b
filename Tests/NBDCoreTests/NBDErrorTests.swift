import Glibc
import NBDCore
import XCTest

final class NBDErrorTests: XCTestCase {
    func testErrnoValuesMapToTheEightWireErrors() {
        let cases: [(Int32, UInt32)] = [
            (EPERM, 1), (EROFS, 1), (EIO, 5), (ENOMEM, 12), (EINVAL, 22), (ENOSPC, 28), (EDQUOT, 28),
            (EFBIG, 28), (EOVERFLOW, 75), (ENOTSUP, 95), (ESHUTDOWN, 108), (ENOENT, 22), (EBADF, 22),
        ]
        for (errno, wire) in cases {
            let error = NBDError(errno: errno, "op")
            XCTAssertEqual(error.code.wireValue, wire, "errno \(errno)")
        }
    }

    func testNotSupportedIsSentOnlyForFastZero() {
        XCTAssertEqual(NBDError.Code.notSupported.wireValue(for: .fastZero), 95)
        XCTAssertEqual(NBDError.Code.notSupported.wireValue(for: []), 22)
        XCTAssertEqual(NBDError.Code.notSupported.wireValue(for: .fua), 22)
    }

    func testOverflowIsSentOnlyForDontFragmentReads() {
        XCTAssertEqual(NBDError.Code.overflow.wireValue(for: .dontFragment), 75)
        XCTAssertEqual(NBDError.Code.overflow.wireValue(for: []), 22)
    }

    func testUnknownCodesAreSentAsInvalidArgument() {
        let custom = NBDError.Code(wireValue: 4242, name: "ECUSTOM")
        XCTAssertEqual(custom.wireValue(for: []), 22)
        XCTAssertEqual(NBDError.Code.shutdown.wireValue(for: []), 108)
    }

    func testMessageNamesTheCauseAndTheSystemReason() {
        let error = NBDError(errno: ENOSPC, "writing 4096 bytes at 0")
        XCTAssertEqual(error.description, "ENOSPC: writing 4096 bytes at 0: No space left on device")
    }
}

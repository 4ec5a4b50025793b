import XCTest

@testable import NBDCurl

/// The checks every response body passes, without a web server: the bytes a misbehaving server
/// sends are refused before they reach the caller's buffer.
final class TransferStateTests: XCTestCase {
    private func responseHeaders(_ state: TransferState, _ lines: [String]) {
        for line in lines {
            var line = line + "\r\n"
            line.withUTF8 { state.header(UnsafeRawBufferPointer($0)) }
        }
    }

    func testALongerBodyThanAskedForIsRefusedAndFlagged() {
        let state = TransferState()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1)
        defer { buffer.deallocate() }
        state.reset(destination: buffer, expectedStatus: 206)
        responseHeaders(state, ["HTTP/1.1 206 Partial Content", "Content-Range: bytes 0-3/10"])
        XCTAssertTrue([UInt8]([1, 2, 3]).withUnsafeBytes { state.body($0) })
        XCTAssertFalse([UInt8]([4, 5]).withUnsafeBytes { state.body($0) })
        XCTAssertTrue(state.overflowed)
        XCTAssertEqual(state.received, 3)
        XCTAssertEqual(state.contentRange, "bytes 0-3/10")
    }

    func testABodyWithAnotherStatusIsNotTaken() {
        let state = TransferState()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1)
        defer { buffer.deallocate() }
        state.reset(destination: buffer, expectedStatus: 206)
        responseHeaders(state, ["HTTP/1.1 200 OK", "accept-ranges:  bytes  "])
        XCTAssertEqual(state.status, 200)
        XCTAssertEqual(state.acceptRanges, "bytes")
        XCTAssertFalse([UInt8]([1]).withUnsafeBytes { state.body($0) })
        XCTAssertEqual(state.received, 0)
    }

    func testARedirectsHeadersAreForgottenAtTheNextStatusLine() {
        let state = TransferState()
        state.reset(destination: nil, expectedStatus: 206)
        responseHeaders(state, ["HTTP/1.1 302 Found", "Content-Range: bytes 0-0/1"])
        responseHeaders(state, ["HTTP/2 206"])
        XCTAssertEqual(state.status, 206)
        XCTAssertNil(state.contentRange)
    }

    func testContentRangeValuesAreParsed() {
        XCTAssertEqual(CurlHandle.completeLength("bytes 0-0/4195840"), 4_195_840)
        XCTAssertEqual(CurlHandle.completeLength("bytes */0"), 0)
        XCTAssertNil(CurlHandle.completeLength("bytes 0-0/*"))
        XCTAssertEqual(CurlHandle.byteRange("bytes 4096-8191/10000")?.first, 4096)
        XCTAssertEqual(CurlHandle.byteRange("bytes 4096-8191/10000")?.last, 8191)
        XCTAssertNil(CurlHandle.byteRange("bytes */10"))
    }
}

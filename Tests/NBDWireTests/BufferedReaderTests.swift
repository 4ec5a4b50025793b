import NBDTestSupport
import NBDWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The reader both sides use, over an in-memory peer that hands out a few bytes at a time.
final class BufferedReaderTests: XCTestCase {
    func testReadingIntoNothingDropsTheBytesAndKeepsWhatFollows() {
        let input = [UInt8](repeating: 0xAA, count: 10_000) + [1, 2, 3, 4]
        let socket = Socket(memory: MemoryTransport(input: input, chunkLimit: 777))
        var reader = BufferedReader(socket: socket, capacity: 4096)
        XCTAssertTrue(reader.fill(atLeast: 100))
        XCTAssertTrue(reader.read(10_000, into: nil))
        var tail = [UInt8](repeating: 0, count: 4)
        XCTAssertTrue(tail.withUnsafeMutableBytes { reader.read(4, into: $0.baseAddress) })
        XCTAssertEqual(tail, [1, 2, 3, 4])
        XCTAssertFalse(reader.fill(atLeast: 1), "bytes after the end of the input")
    }

    func testATruncatedPayloadIsReportedAsTheEndOfTheStream() {
        let socket = Socket(memory: MemoryTransport(input: [UInt8](repeating: 7, count: 50)))
        var reader = BufferedReader(socket: socket, capacity: 4096)
        var destination = [UInt8](repeating: 0, count: 100)
        XCTAssertFalse(destination.withUnsafeMutableBytes { reader.read(100, into: $0.baseAddress) })
    }
}

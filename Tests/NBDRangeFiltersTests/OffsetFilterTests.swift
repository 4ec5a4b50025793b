import NBDCore
import NBDRangeFilters
import NBDTestSupport
import XCTest

/// The offset filter's window over a 1 MiB layer below.
final class OffsetFilterTests: XCTestCase {
    func testWindowSizeAndRequestsAreMovedByTheOffset() async throws {
        let backend = TestMemoryBackend(size: 1 << 20)
        let log = OperationLog()
        let filter = try OffsetFilter(
            wrapping: RecordingFilter(wrapping: backend, log: log, connection: 1), offset: 4096, range: 8192)
        XCTAssertEqual(filter.capabilities.size, 8192)

        try await filter.writeString("hello", at: 0)
        try await filter.zero(count: 512, at: 512, flags: [])
        try await filter.trim(count: 512, at: 1024, flags: [])
        try await filter.cache(count: 512, at: 2048, flags: [])
        _ = try await filter.extents(count: 512, at: 4096, flags: [])
        XCTAssertEqual(log.all.map(\.offset), [4096, 4608, 5120, 6144, 8192])
        let below = try await backend.readString(5, at: 4096)
        let seen = try await filter.readString(5, at: 0)
        XCTAssertEqual(below, "hello")
        XCTAssertEqual(seen, "hello")
    }

    func testFileRegionsAreMovedByTheOffsetAndStayInTheWindow() async throws {
        let filter = try OffsetFilter(wrapping: RegionReportingBackend(), offset: 4096, range: 8192)
        let region = await filter.fileRegion(count: 8000, at: 100)
        XCTAssertEqual(region, FileRegion(descriptor: 42, offset: 4196))
        let outside = await filter.fileRegion(count: 100, at: 8100)
        XCTAssertNil(outside, "past the window")
    }

    func testWithoutRangeTheWindowRunsToTheEnd() async throws {
        let filter = try OffsetFilter(wrapping: TestMemoryBackend(size: 1 << 20), offset: 1000)
        XCTAssertEqual(filter.capabilities.size, (1 << 20) - 1000)
    }

    func testWindowPastTheEndRefusesTheConnection() async throws {
        let backend = TestMemoryBackend(size: 65536)
        XCTAssertThrowsError(try OffsetFilter(wrapping: backend, offset: 65537)) { error in
            XCTAssertEqual((error as? NBDError)?.code, .invalidArgument)
        }
        XCTAssertThrowsError(try OffsetFilter(wrapping: backend, offset: 4096, range: 65536 - 4095))
        XCTAssertNoThrow(try OffsetFilter(wrapping: backend, offset: 4096, range: 65536 - 4096))
    }

    func testLayerParsesSizes() async throws {
        let layer = try OffsetLayer(parameters: ["offset": "1K", "range": "2K"])
        XCTAssertEqual(layer.offset, 1024)
        XCTAssertEqual(layer.range, 2048)
        let stack = try await layer.wrap(AnyBlockBackend(TestMemoryBackend(size: 1 << 20)), for: ConnectionInfo())
        XCTAssertEqual(stack.capabilities.size, 2048)
        XCTAssertThrowsError(try OffsetLayer(parameters: ["offset": "lots"])) { error in
            XCTAssertTrue("\(error)".contains("offset=lots"), "\(error)")
        }
    }
}

/// A 1 MiB layer that says every byte lies in descriptor 42 at the same offset.
private struct RegionReportingBackend: BlockBackend {
    var capabilities: Capabilities { Capabilities(size: 1 << 20) }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    func fileRegion(count: Int, at offset: UInt64) async -> FileRegion? {
        FileRegion(descriptor: 42, offset: offset)
    }
}

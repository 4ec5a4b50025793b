import NBDWire
import XCTest

@testable import NBDServer

final class OutputBufferTests: XCTestCase {
    func testShrinkReleasesMemoryAboveTheLimitOnlyWhenEmpty() {
        var buffer = OutputBuffer(capacity: 1024)
        _ = buffer.append(uninitialized: 32 << 20)
        XCTAssertGreaterThanOrEqual(buffer.storage.count, 32 << 20)
        buffer.shrink(to: 8 << 20)
        XCTAssertGreaterThanOrEqual(buffer.storage.count, 32 << 20, "pending bytes are never dropped")
        buffer.removeAll()
        buffer.shrink(to: Connection<TestProvider>.retainedOutputCapacity)
        XCTAssertEqual(buffer.storage.count, 8 << 20)
        buffer.shrink(to: 8 << 20)
        XCTAssertEqual(buffer.storage.count, 8 << 20, "a buffer at the limit is kept")
    }
}

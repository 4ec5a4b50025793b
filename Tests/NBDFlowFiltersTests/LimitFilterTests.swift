import NBDCore
import NBDFlowFilters
import NBDTestSupport
import XCTest

/// The limit filter: admission on open, release on close.
final class LimitFilterTests: XCTestCase {
    func testTheConnectionPastTheLimitIsRefusedWithEPERMUntilOneCloses() async throws {
        let layer = try LimitLayer(parameters: ["limit": "2"])
        let backend = AnyBlockBackend(TestMemoryBackend(size: 1 << 20))
        let one = try await layer.wrap(backend, for: ConnectionInfo())
        _ = try await layer.wrap(backend, for: ConnectionInfo())
        do {
            _ = try await layer.wrap(backend, for: ConnectionInfo())
            XCTFail("a third connection was admitted with limit=2")
        } catch {
            XCTAssertEqual(error.code, .notPermitted)
            XCTAssertTrue(error.message.contains("too many clients"), error.message)
            XCTAssertTrue(error.message.contains("limit=2"), error.message)
        }
        await one.close()
        _ = try await layer.wrap(backend, for: ConnectionInfo())
        XCTAssertEqual(layer.limit.openConnections, 2)
    }

    func testDefaultIsOneClientWithoutMultiConnAndZeroIsUnlimited() async throws {
        let single = try LimitLayer(parameters: [:])
        XCTAssertEqual(single.limit.limit, 1)
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20, canMultiConn: true))
        let filter = try LimitFilter(wrapping: backend, limit: single.limit)
        XCTAssertFalse(filter.capabilities.canMultiConn, "a second connection could never be served")
        XCTAssertThrowsError(try LimitFilter(wrapping: backend, limit: single.limit))

        let unlimited = ConnectionLimit(0)
        for _ in 0..<100 { _ = try LimitFilter(wrapping: backend, limit: unlimited) }
        XCTAssertEqual(unlimited.openConnections, 100)
        XCTAssertTrue(try LimitFilter(wrapping: backend, limit: ConnectionLimit(2)).capabilities.canMultiConn)
        XCTAssertThrowsError(try LimitLayer(parameters: ["limit": "-1"])) { error in
            XCTAssertTrue("\(error)".contains("limit=-1"), "\(error)")
        }
    }
}

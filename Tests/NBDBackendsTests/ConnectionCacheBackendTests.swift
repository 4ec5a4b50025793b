import NBDBackends
import NBDCore
import NBDTestSupport
import XCTest

final class ConnectionCacheBackendTests: XCTestCase {
    /// A flushed write must survive other connections opening the same or another export name.
    func testAFlushedWriteSurvivesNewConnectionsToAnyExport() async throws {
        let provider = try ConnectionCacheProvider(size: 32, initialText: "Initial")
        let a = try await provider.open(ConnectionInfo(id: 1, exportName: "a"))
        let b = try await provider.open(ConnectionInfo(id: 2, exportName: "b"))
        try await a.writeString("AAAA", at: 0)
        try await a.flush(flags: [])

        let later = try await provider.open(ConnectionInfo(id: 3, exportName: "a"))
        let seen = try await later.readString(7, at: 0)
        XCTAssertEqual(seen, "AAAAial", "a new connection to export a must see what was flushed there")
        let other = try await b.readString(7, at: 0)
        XCTAssertEqual(other, "Initial", "export b starts from init= and does not see export a's writes")
        XCTAssertEqual(provider.persistentBytes(4, at: 0, exportName: "a"), Array("AAAA".utf8))
        for connection in [a, b, later] { await connection.close() }
    }

    /// Each export name starts from `init=`, not from whatever the default export holds by then.
    func testANewExportNameStartsFromTheInitialText() async throws {
        let provider = try ConnectionCacheProvider(size: 16, initialText: "Start")
        let main = try await provider.open(ConnectionInfo(id: 1))
        try await main.writeString("Other", at: 0)
        try await main.flush(flags: [])
        let named = try await provider.open(ConnectionInfo(id: 2, exportName: "fresh"))
        let seen = try await named.readString(5, at: 0)
        XCTAssertEqual(seen, "Start")
        await main.close()
        await named.close()
    }
}

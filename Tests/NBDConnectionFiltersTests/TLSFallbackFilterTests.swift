import NBDBackends
import NBDConnectionFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

final class TLSFallbackFilterTests: XCTestCase {
    func testPlaintextClientsGetTheMessageWithoutOpeningBelow() async throws {
        let counter = OpenCounter()
        let stack = FilterStack(
            [try TLSFallbackLayer(parameters: ["tlsreadme": "go away"]), CountingLayer(counter: counter)],
            over: try MemoryBackendProvider(size: 1 << 20))
        let backend = try await stack.open(ConnectionInfo(exportName: "secret", isTLS: false))
        XCTAssertEqual(backend.capabilities.size, 512)
        XCTAssertFalse(backend.capabilities.isWritable)
        let bytes = try await backend.readBytes(512, at: 0)
        XCTAssertEqual(Array(bytes.prefix(7)), Array("go away".utf8))
        XCTAssertEqual(bytes.dropFirst(7).allSatisfy { $0 == 0 }, true)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .notPermitted)
        await backend.close()
        XCTAssertEqual(counter.opens.load(ordering: .relaxed), 0)

        let list = try await stack.listExports(ConnectionInfo(isTLS: false))
        XCTAssertEqual(list, [ExportEntry(name: "")])
    }

    func testTLSClientsGetTheExport() async throws {
        let stack = FilterStack([TLSFallbackLayer()], over: try MemoryBackendProvider(size: 1 << 20))
        let backend = try await stack.open(ConnectionInfo(isTLS: true))
        XCTAssertEqual(backend.capabilities.size, 1 << 20)
        await backend.close()
    }

    func testDefaultMessageIsNbdkitsAndLongMessagesAreCut() async throws {
        let backend = try await TLSFallbackLayer().open(for: ConnectionInfo()) { _ async throws(NBDError) in
            XCTFail("nothing below may open for a plaintext client")
            throw NBDError(.ioError, "unreachable")
        }
        let text = try await backend.readString(78, at: 0)
        XCTAssertEqual(text, "This NBD server requires TLS authentication before it will serve useful data.\n")
        let long = TLSReadmeBackend(message: String(repeating: "x", count: 600))
        XCTAssertEqual(long.contents.count, 512)
    }
}

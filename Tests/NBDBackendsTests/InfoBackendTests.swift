import NBDBackends
import NBDCore
import NBDTestSupport
import XCTest

final class InfoBackendTests: XCTestCase {
    func testExportNameModeServesTheName() async throws {
        let backend = try await InfoBackendProvider().open(ConnectionInfo(exportName: "hello"))
        XCTAssertEqual(backend.capabilities.size, 5)
        XCTAssertFalse(backend.capabilities.isWritable)
        let text = try await backend.readString(5, at: 0)
        XCTAssertEqual(text, "hello")
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .notPermitted)
    }

    func testBase64ModeDecodesTheNameAndRefusesOtherText() async throws {
        let provider = InfoBackendProvider(mode: .base64ExportName)
        for (encoded, plain) in [
            ("aGVsbG8gd29ybGQ=", "hello world"), ("YQ==", "a"), ("YWI=", "ab"), ("YWJj", "abc"), ("", ""),
        ] {
            let backend = try await provider.open(ConnectionInfo(exportName: encoded))
            XCTAssertEqual(backend.capabilities.size, UInt64(plain.utf8.count), encoded)
            if !plain.isEmpty {
                let text = try await backend.readString(plain.utf8.count, at: 0)
                XCTAssertEqual(text, plain)
            }
        }
        for bad in ["a!b", "YQ=", "Y===", "YQ==YQ=="] {
            await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in _ = try await provider.open(ConnectionInfo(exportName: bad)) },
                code: .invalidArgument, bad)
        }
    }

    func testAddressModeServesThePeer() async throws {
        let provider = InfoBackendProvider(mode: .address)
        let tcp = try await provider.open(ConnectionInfo(peer: .ipv4([127, 0, 0, 1], port: 1234)))
        let text = try await tcp.readString(Int(tcp.capabilities.size), at: 0)
        XCTAssertEqual(text, "127.0.0.1:1234")
        let unix = try await provider.open(ConnectionInfo(peer: .unix(credentials: nil)))
        let unixText = try await unix.readString(4, at: 0)
        XCTAssertEqual(unixText, "unix")
    }

    func testClockModesServeTwelveBigEndianBytes() async throws {
        let time = try await InfoBackendProvider(mode: .time).open(ConnectionInfo())
        XCTAssertEqual(time.capabilities.size, 12)
        let bytes = try await time.readBytes(12, at: 0)
        let seconds = bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let microseconds = bytes.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let now = UInt64(Date().timeIntervalSince1970)
        XCTAssertTrue(seconds + 60 > now && seconds <= now + 60, "\(seconds) vs \(now)")
        XCTAssertLessThan(microseconds, 1_000_000)

        for mode in [InfoMode.uptime, .connTime] {
            let backend = try await InfoBackendProvider(mode: mode).open(ConnectionInfo())
            let bytes = try await backend.readBytes(12, at: 0)
            XCTAssertEqual(bytes.prefix(4), [0, 0, 0, 0], "\(mode): an uptime of less than 2^32 seconds")
        }
    }

    func testModeParameterIsPositionalAndChecked() async throws {
        XCTAssertEqual(InfoBackendProvider.positionalParameter, "mode")
        let provider = try await InfoBackendProvider(parameters: ["mode": "conntime"], options: BackendOptions())
        XCTAssertEqual(provider.mode, .connTime)
        do {
            _ = try await InfoBackendProvider(parameters: ["mode": "date"], options: BackendOptions())
            XCTFail("mode=date must be refused")
        } catch {
            XCTAssertTrue(error.message.contains("mode=date"))
            XCTAssertTrue(error.message.contains("base64exportname"))
        }
    }
}

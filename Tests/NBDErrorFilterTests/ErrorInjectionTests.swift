import Foundation
import NBDBackends
import NBDCore
import NBDErrorFilter
import NBDTestSupport
import XCTest

final class ErrorInjectionTests: XCTestCase {
    private func stack(_ parameters: ParameterValues, log: OperationLog = OperationLog()) async throws -> AnyBlockBackend {
        let provider = try ConnectionCacheProvider(size: 4096, initialText: "hello")
        let layer = try ErrorInjectionLayer(parameters: parameters)
        return try await FilterStack([layer, RecordingLayer(log: log)], over: provider).open(ConnectionInfo())
    }

    func testEveryOperationFailsWithTheConfiguredErrorAtFullRate() async throws {
        let log = OperationLog()
        let backend = try await stack(["error": "ENOSPC", "error-rate": "100%"], log: log)
        let operations: [(String, () async throws(NBDError) -> Void)] = [
            ("read", { () async throws(NBDError) in _ = try await backend.readBytes(1, at: 0) }),
            ("write", { () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }),
            ("zero", { () async throws(NBDError) in try await backend.zero(count: 1, at: 0, flags: []) }),
            ("trim", { () async throws(NBDError) in try await backend.trim(count: 1, at: 0, flags: []) }),
            ("flush", { () async throws(NBDError) in try await backend.flush(flags: []) }),
            ("cache", { () async throws(NBDError) in try await backend.cache(count: 1, at: 0, flags: []) }),
            ("extents", { () async throws(NBDError) in _ = try await backend.extents(count: 1, at: 0, flags: []) }),
        ]
        for (name, operation) in operations {
            await XCTAssertThrowsNBDError(operation, code: .noSpace, name)
        }
        XCTAssertTrue(log.all.isEmpty, "an injected error never reaches the layer below")
    }

    func testPerOperationSettingsOverrideTheGeneralOnes() async throws {
        let backend = try await stack(["error-rate": "0", "error-pwrite": "EPERM", "error-pwrite-rate": "1"])
        let read = try await backend.readString(5, at: 0)
        XCTAssertEqual(read, "hello")
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .notPermitted)
    }

    func testErrorsAreInjectedOnlyWhileTheTriggerFileExists() async throws {
        let trigger = FileManager.default.temporaryDirectory.appendingPathComponent("inject-\(UUID().uuidString)").path
        let backend = try await stack(["error-rate": "100%", "error-file": trigger])
        _ = try await backend.readBytes(1, at: 0)
        XCTAssertTrue(FileManager.default.createFile(atPath: trigger, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in _ = try await backend.readBytes(1, at: 0) }, code: .ioError)
        try FileManager.default.removeItem(atPath: trigger)
        _ = try await backend.readBytes(1, at: 0)
    }

    func testRatesAndCodesAreValidated() {
        XCTAssertThrowsError(try ErrorInjectionLayer(parameters: ["error-rate": "150%"]))
        XCTAssertThrowsError(try ErrorInjectionLayer(parameters: ["error-rate": "-0.1"]))
        XCTAssertThrowsError(try ErrorInjectionLayer(parameters: ["error": "EAGAIN"]))
        XCTAssertEqual(try ErrorInjectionPolicy.parseRate("10%", for: "r"), 0.1, accuracy: 1e-9)
        XCTAssertEqual(try ErrorInjectionPolicy.parseRate("0.25", for: "r"), 0.25, accuracy: 1e-9)
    }

    /// A failing flush below the multi-conn filter fails the client's flush, keeps the written data
    /// pending, and the next flush (once the fault is gone) publishes it to every connection.
    func testFailedFanOutFlushIsRetriedAndThenVisibleEverywhere() async throws {
        let trigger = FileManager.default.temporaryDirectory.appendingPathComponent("inject-\(UUID().uuidString)").path
        let log = OperationLog()
        let provider = try ConnectionCacheProvider(size: 4096, initialText: "Initial")
        let layers: [any FilterLayer] = [
            MultiConnLayer(MultiConnConfiguration(mode: .emulate)),
            try ErrorInjectionLayer(parameters: ["error-flush-rate": "100%", "error-flush-file": trigger]),
            RecordingLayer(log: log),
        ]
        let stack = FilterStack(layers, over: provider)
        let a = try await stack.open(ConnectionInfo())
        let b = try await stack.open(ConnectionInfo())
        _ = try await b.readString(7, at: 0)
        try await a.writeString("Changed", at: 0)
        XCTAssertTrue(FileManager.default.createFile(atPath: trigger, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        await XCTAssertThrowsNBDError({ () async throws(NBDError) in try await b.flush(flags: []) }, code: .ioError)
        XCTAssertEqual(log.count(of: .flush), 0)
        try FileManager.default.removeItem(atPath: trigger)
        try await b.flush(flags: [])
        XCTAssertEqual(log.count(of: .flush), 2, "both connections were still dirty and are flushed now")
        let seen = try await b.readString(7, at: 0)
        XCTAssertEqual(seen, "Changed")
        await a.close()
        await b.close()
    }
}

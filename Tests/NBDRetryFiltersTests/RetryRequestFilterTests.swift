import Foundation
import NBDCore
import NBDErrorFilter
import NBDRetryFilters
import NBDTestSupport
import Synchronization
import XCTest

final class RetryRequestFilterTests: XCTestCase {
    private func stack(
        _ retry: ParameterValues, trigger: String, counter: AttemptCounter, provider: CountingProvider
    ) throws -> FilterStack<CountingProvider> {
        var parameters = retry
        if parameters["retry-request-delay"] == nil { parameters.append("retry-request-delay", "1ms") }
        return FilterStack(
            [
                try RetryRequestLayer(parameters: parameters), AttemptCountingLayer(counter: counter),
                try ErrorInjectionLayer(parameters: ["error-rate": "100%", "error-file": trigger]),
            ], over: provider)
    }

    func testARequestSucceedsOnceTheFaultIsGoneWithoutReopening() async throws {
        let trigger = makeTrigger()
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let provider = try CountingProvider()
        let counter = AttemptCounter.removing(trigger, atAttempt: 3)
        let backend = try await stack([:], trigger: trigger, counter: counter, provider: provider).open(
            ConnectionInfo())
        try await backend.writeString("hello", at: 0)
        XCTAssertEqual(counter.count.load(ordering: .relaxed), 3)
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 1, "retry-request never reopens")
        let read = try await backend.readString(5, at: 0)
        XCTAssertEqual(read, "hello")
    }

    func testTheNumberOfRetriesIsBounded() async throws {
        let trigger = makeTrigger()
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let counter = AttemptCounter()
        let backend = try await stack(
            ["retry-request-retries": "4"], trigger: trigger, counter: counter, provider: try CountingProvider()
        ).open(ConnectionInfo())
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.flush(flags: []) }, code: .ioError)
        XCTAssertEqual(counter.count.load(ordering: .relaxed), 5, "the first attempt and four retries")
    }

    func testOpeningIsRetriedUnlessRetryRequestOpenIsFalse() async throws {
        let provider = try CountingProvider(refusingFirst: 1)
        _ = try await FilterStack([try RetryRequestLayer(parameters: ["retry-request-delay": "1ms"])], over: provider)
            .open(ConnectionInfo())
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 2)
        let strict = try CountingProvider(refusingFirst: 1)
        let layer = try RetryRequestLayer(parameters: ["retry-request-delay": "1ms", "retry-request-open": "false"])
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await FilterStack([layer], over: strict).open(ConnectionInfo()) },
            code: .ioError)
        XCTAssertEqual(strict.opens.load(ordering: .relaxed), 1)
    }

    func testAFastZeroAnsweredWithENOTSUPIsNotRetried() async throws {
        let counter = AttemptCounter { _, command, flags throws(NBDError) in
            if command == .writeZeroes && flags.contains(.fastZero) { throw NBDError(.notSupported, "not fast") }
        }
        let backend = try await FilterStack(
            [
                try RetryRequestLayer(parameters: ["retry-request-delay": "1ms"]),
                AttemptCountingLayer(counter: counter),
            ],
            over: try CountingProvider()
        ).open(ConnectionInfo())
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.zero(count: 512, at: 0, flags: .fastZero) },
            code: .notSupported)
        XCTAssertEqual(counter.count.load(ordering: .relaxed), 1)
    }

    func testParametersAreCheckedAndErrorsNameThem() throws {
        for (parameters, name) in [
            (["retry-request-delay": "0"] as ParameterValues, "retry-request-delay"),
            (["retry-request-retries": "x"], "retry-request-retries"),
            (["retry-request-open": "perhaps"], "retry-request-open"),
        ] {
            XCTAssertThrowsError(try RetryRequestLayer(parameters: parameters), "\(parameters)") { error in
                XCTAssertTrue("\(error)".contains(name), "\(error) does not name \(name)")
            }
        }
        let defaults = try RetryRequestLayer(parameters: [:]).configuration
        XCTAssertEqual(defaults.retries, 2)
        XCTAssertEqual(defaults.delay, .seconds(2))
        XCTAssertTrue(defaults.retriesOpen)
    }
}

import Foundation
import NBDCore
import NBDErrorFilter
import NBDRetryFilters
import NBDTestSupport
import Synchronization
import XCTest

/// The retry filter over the error filter (whose trigger file makes the fault come and go), with a
/// counter between them that sees every attempt.
final class RetryFilterTests: XCTestCase {
    private func stack(
        _ retry: ParameterValues, trigger: String, counter: AttemptCounter, provider: CountingProvider
    ) throws -> FilterStack<CountingProvider> {
        var parameters = retry
        if parameters["retry-delay"] == nil { parameters.append("retry-delay", "1ms") }
        return FilterStack(
            [
                try RetryLayer(parameters: parameters), AttemptCountingLayer(counter: counter),
                try ErrorInjectionLayer(parameters: ["error-rate": "100%", "error-file": trigger]),
            ], over: provider)
    }

    func testARequestSucceedsOnceTheFaultIsGoneAfterReopeningTheLayersBelow() async throws {
        let trigger = makeTrigger()
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let provider = try CountingProvider()
        let counter = AttemptCounter.removing(trigger, atAttempt: 3)
        let backend = try await stack([:], trigger: trigger, counter: counter, provider: provider).open(
            ConnectionInfo())
        try await backend.writeString("after the fault", at: 0)
        XCTAssertEqual(counter.count.load(ordering: .relaxed), 3, "two failed attempts, then the one that succeeded")
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 3, "opened once, then reopened after each failure")
        XCTAssertEqual(provider.closes.load(ordering: .relaxed), 2, "each replaced backend is closed")
        let read = try await backend.readString(15, at: 0)
        XCTAssertEqual(read, "after the fault")
        await backend.close()
        XCTAssertEqual(provider.closes.load(ordering: .relaxed), 3)
    }

    func testTheNumberOfRetriesIsBoundedAndTheLastErrorReachesTheClient() async throws {
        let trigger = makeTrigger()
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let provider = try CountingProvider()
        let counter = AttemptCounter()
        let backend = try await stack(
            ["retries": "3", "retry-exponential": "no"], trigger: trigger, counter: counter, provider: provider
        )
        .open(ConnectionInfo())
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await backend.readBytes(1, at: 0) }, code: .ioError)
        XCTAssertEqual(counter.count.load(ordering: .relaxed), 4, "the first attempt and three retries")
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 4)
        // The fault gone, the same connection works again.
        try FileManager.default.removeItem(atPath: trigger)
        _ = try await backend.readBytes(1, at: 0)
    }

    func testConcurrentFailingRequestsShareReopensAndEveryBackendIsClosedOnce() async throws {
        let trigger = makeTrigger()
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let provider = try CountingProvider()
        let counter = AttemptCounter.removing(trigger, atAttempt: 20)
        let backend = try await stack(
            ["retries": "50", "retry-exponential": "false"], trigger: trigger, counter: counter, provider: provider
        )
        .open(ConnectionInfo())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<8 {
                group.addTask { try await backend.writeBytes([UInt8(index + 1)], at: UInt64(index)) }
            }
            try await group.waitForAll()
        }
        let bytes = try await backend.readBytes(8, at: 0)
        XCTAssertEqual(bytes, [1, 2, 3, 4, 5, 6, 7, 8])
        await backend.close()
        XCTAssertEqual(
            provider.closes.load(ordering: .relaxed), provider.opens.load(ordering: .relaxed),
            "every backend opened is closed exactly once")
    }

    /// A reopen replaces a backend that may hold cached writes: it is flushed first, and if that fails
    /// the client's next flush fails too instead of promising durability the old backend took away.
    func testAFlushAfterAReopenThatMayHaveLostWritesFailsOnce() async throws {
        let trigger = FileManager.default.temporaryDirectory.appendingPathComponent("retry-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let provider = try CountingProvider()
        // Attempts: 1 the write, 2 the failing read, 3 the flush of the replaced backend, 4 the retried read.
        let counter = AttemptCounter { attempt, _, _ in
            if attempt == 4 {
                try? FileManager.default.removeItem(atPath: trigger)
                provider.failsFlushes.store(false, ordering: .relaxed)
            }
        }
        let backend = try await FilterStack(
            [
                try RetryLayer(parameters: ["retry-delay": "1ms"]), AttemptCountingLayer(counter: counter),
                try ErrorInjectionLayer(parameters: ["error-pread-rate": "100%", "error-pread-file": trigger]),
            ], over: provider
        ).open(ConnectionInfo())
        try await backend.writeBytes([1], at: 0)
        XCTAssertTrue(FileManager.default.createFile(atPath: trigger, contents: nil))
        provider.failsFlushes.store(true, ordering: .relaxed)
        _ = try await backend.readBytes(1, at: 0)
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 2)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.flush(flags: []) }, code: .ioError)
        try await backend.flush(flags: [])
    }

    func testAReopenFlushesTheReplacedBackendsWritesSoTheNextFlushSucceeds() async throws {
        let trigger = makeTrigger()
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let provider = try CountingProvider()
        let backend = try await stack(
            [:], trigger: trigger, counter: .removing(trigger, atAttempt: 2), provider: provider
        )
        .open(ConnectionInfo())
        try await backend.writeBytes([1], at: 0)
        try await backend.flush(flags: [])
    }

    /// A request still running on the backend that another request's failure replaced keeps it open;
    /// it is closed when that request returns, not under it.
    func testAReplacedBackendIsClosedOnlyAfterItsLastRunningRequest() async throws {
        let trigger = makeTrigger()
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let provider = try CountingProvider()
        let gate = AsyncGate("held read")
        let counter = AttemptCounter.removing(trigger, atAttempt: 2)
        let backend = try await FilterStack(
            [
                try RetryLayer(parameters: ["retry-delay": "1ms"]), GateLayer(gate: gate),
                AttemptCountingLayer(counter: counter),
                try ErrorInjectionLayer(parameters: ["error-pwrite-rate": "100%", "error-pwrite-file": trigger]),
            ], over: provider
        ).open(ConnectionInfo())
        let held = Task { try await backend.readBytes(1, at: 4096) }
        await gate.waitForArrivals(1)
        try await backend.writeBytes([1], at: 0)
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 2, "the failed write reopened the stack below")
        XCTAssertEqual(provider.closes.load(ordering: .relaxed), 0, "the held read still uses the first backend")
        await gate.open()
        _ = try await held.value
        XCTAssertEqual(provider.closes.load(ordering: .relaxed), 1, "closed once its last request returned")
        await backend.close()
        XCTAssertEqual(provider.closes.load(ordering: .relaxed), 2)
    }

    func testRetryReadonlyReopensReadOnlyAndThenRefusesWrites() async throws {
        let trigger = makeTrigger()
        defer { try? FileManager.default.removeItem(atPath: trigger) }
        let provider = try CountingProvider()
        let counter = AttemptCounter.removing(trigger, atAttempt: 2)
        let backend = try await stack(["retry-readonly": "yes"], trigger: trigger, counter: counter, provider: provider)
            .open(ConnectionInfo())
        _ = try await backend.readBytes(1, at: 0)
        XCTAssertEqual(provider.readOnlyOpens.load(ordering: .relaxed), 1, "the reopen was read-only")
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .notPermitted)
    }

    func testOpeningTheLayersBelowIsRetried() async throws {
        let provider = try CountingProvider(refusingFirst: 2)
        let stack = FilterStack([try RetryLayer(parameters: ["retry-delay": "1ms"])], over: provider)
        let backend = try await stack.open(ConnectionInfo())
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 3)
        try await backend.writeBytes([1], at: 0)
        let refusing = try CountingProvider(refusingFirst: 10)
        let bounded = FilterStack([try RetryLayer(parameters: ["retry-delay": "1ms", "retries": "2"])], over: refusing)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await bounded.open(ConnectionInfo()) }, code: .ioError)
        XCTAssertEqual(refusing.opens.load(ordering: .relaxed), 3)
    }

    func testRetryReadonlyAppliesWhenTheFirstOpenHadToBeRetried() async throws {
        let provider = try CountingProvider(refusingFirst: 1)
        let backend = try await FilterStack(
            [try RetryLayer(parameters: ["retry-delay": "1ms", "retry-readonly": "on"])], over: provider
        ).open(ConnectionInfo())
        XCTAssertEqual(provider.readOnlyOpens.load(ordering: .relaxed), 1, "the retried open was read-only")
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .notPermitted)
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 2, "refused at once, without reopening again")
    }

    func testAFastZeroAnsweredWithENOTSUPIsNotRetried() async throws {
        let counter = AttemptCounter { _, command, flags throws(NBDError) in
            if command == .writeZeroes && flags.contains(.fastZero) { throw NBDError(.notSupported, "not fast") }
        }
        let provider = try CountingProvider()
        let backend = try await FilterStack(
            [try RetryLayer(parameters: ["retry-delay": "1ms"]), AttemptCountingLayer(counter: counter)], over: provider
        ).open(ConnectionInfo())
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.zero(count: 512, at: 0, flags: .fastZero) },
            code: .notSupported)
        XCTAssertEqual(counter.count.load(ordering: .relaxed), 1)
        XCTAssertEqual(provider.opens.load(ordering: .relaxed), 1)
    }

    func testTheDelayDoublesBeforeEachRetryOnlyWhenExponential() throws {
        let exponential = try RetryLayer(parameters: [:]).configuration
        XCTAssertEqual((1...5).map { exponential.delay(before: $0) }, [2, 4, 8, 16, 32].map { Duration.seconds($0) })
        let fixed = try RetryLayer(parameters: ["retry-delay": "250ms", "retry-exponential": "no"]).configuration
        XCTAssertEqual((1...3).map { fixed.delay(before: $0) }, Array(repeating: .milliseconds(250), count: 3))
    }

    func testParametersAreCheckedAndErrorsNameThem() throws {
        for (parameters, name) in [
            (["retry-delay": "0"] as ParameterValues, "retry-delay"), (["retries": "-1"], "retries"),
            (["retry-exponential": "maybe"], "retry-exponential"), (["retry-readonly": "2"], "retry-readonly"),
        ] {
            XCTAssertThrowsError(try RetryLayer(parameters: parameters), "\(parameters)") { error in
                XCTAssertTrue("\(error)".contains(name), "\(error) does not name \(name)")
            }
        }
        let defaults = try RetryLayer(parameters: [:]).configuration
        XCTAssertEqual(defaults.retries, 5)
        XCTAssertEqual(defaults.delay, .seconds(2))
        XCTAssertTrue(defaults.isExponential)
        XCTAssertFalse(defaults.reopensReadOnly)
    }
}

import Foundation
import NBDClient
import Synchronization
import XCTest

/// How long a test waits for something that should happen promptly before it fails instead of
/// hanging: `NBD_TEST_WAIT_SECONDS`, or 30 seconds. A safety net, never a synchronization.
package enum TestWait {
    package static let limit: Duration = {
        if let text = ProcessInfo.processInfo.environment["NBD_TEST_WAIT_SECONDS"], let seconds = Double(text),
            seconds > 0
        {
            return .milliseconds(Int64(seconds * 1000))
        }
        return .seconds(30)
    }()
}

package struct WaitTimedOut: Error, CustomStringConvertible {
    package var what: String
    package var description: String { "timed out after \(TestWait.limit) waiting for \(what)" }
}

/// Runs `operation` in a task of its own and returns its result, or fails the test and throws
/// ``WaitTimedOut`` when it has not finished within ``TestWait/limit`` (the task is then
/// cancelled and left behind, so a continuation that is never resumed cannot hang the test).
package func withBoundedWait<T: Sendable>(
    _ what: String, file: StaticString = #filePath, line: UInt = #line,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = Outcome<T>()
    let work = Task { outcome.deliver(await Result { try await operation() }) }
    let timer = Task {
        try? await Task.sleep(for: TestWait.limit)
        outcome.deliver(.failure(WaitTimedOut(what: what)))
    }
    let result = await outcome.value
    timer.cancel()
    if case .failure(let error as WaitTimedOut) = result {
        work.cancel()
        XCTFail(error.description, file: file, line: line)
    }
    return try result.get()
}

/// Yields until `condition` holds, for state that changes without a signal to wait on; fails the
/// test and returns `false` after ``TestWait/limit``.
@discardableResult
package func waitUntil(
    _ what: String, file: StaticString = #filePath, line: UInt = #line, _ condition: () async -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + TestWait.limit
    while await !condition() {
        if ContinuousClock.now >= deadline {
            XCTFail("timed out after \(TestWait.limit) waiting for \(what)", file: file, line: line)
            return false
        }
        await Task.yield()
    }
    return true
}

extension Result where Failure == any Error {
    fileprivate init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// A result delivered once, by whichever producer comes first, and awaited once.
private final class Outcome<Value: Sendable>: Sendable {
    private struct State {
        var value: Result<Value, any Error>?
        var waiter: CheckedContinuation<Result<Value, any Error>, Never>?
    }
    private let state = Mutex(State())

    func deliver(_ value: Result<Value, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<Result<Value, any Error>, Never>? in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    var value: Result<Value, any Error> {
        get async {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Result<Value, any Error>? in
                    if let value = state.value { return value }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}

/// Connects an `NBDClient` connection to the Unix socket at `path`, failing the test instead of
/// hanging if the server does not answer.
package func connect(_ path: String, file: StaticString = #filePath, line: UInt = #line) async throws -> NBDConnection {
    try await withBoundedWait("a connection to \(path)", file: file, line: line) {
        try await NBDConnection.connect(to: .unix(path))
    }
}

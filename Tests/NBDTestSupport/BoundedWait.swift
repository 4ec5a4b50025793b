import Dispatch
import NBDCore
import Synchronization
import XCTest

/// How long a test waits for something that should happen promptly (a barrier, a continuation, a
/// server reply, a child process) before it fails instead of hanging CI.
///
/// A broken feature must make its test fail with a message; the limit is a safety net, never a
/// synchronization: a passing test never reaches it. `NBD_TEST_WAIT_SECONDS` overrides it (a slow
/// sanitizer run may want more, a check that a test fails rather than hangs may want less).
public enum TestWait {
    /// The limit: `NBD_TEST_WAIT_SECONDS`, or 30 seconds.
    public static let limit: Duration = {
        if let text = ProcessInfo.processInfo.environment["NBD_TEST_WAIT_SECONDS"], let seconds = Double(text),
            seconds > 0
        {
            return .milliseconds(Int64(seconds * 1000))
        }
        return .seconds(30)
    }()

    /// ``limit`` as a `DispatchTime` from now, for semaphores.
    public static var deadline: DispatchTime {
        let (seconds, attoseconds) = limit.components
        return .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
    }
}

/// What a bounded wait throws when the limit passed: the test has already been failed with `what`.
public struct WaitTimedOut: Error, CustomStringConvertible {
    /// What was waited for.
    public var what: String
    public var description: String { "timed out after \(TestWait.limit) waiting for \(what)" }
}

/// Runs `operation` and returns its result, or fails the test and throws ``WaitTimedOut`` when it
/// has not finished within `limit`.
///
/// The operation runs in a task of its own, so one stuck on a continuation that is never resumed
/// cannot keep the test from failing; it is cancelled and left behind.
public func withBoundedWait<T: Sendable>(
    _ what: String, limit: Duration = TestWait.limit, file: StaticString = #filePath, line: UInt = #line,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = OneShot<Result<T, any Error>>()
    let work = Task { outcome.deliver(await Result { try await operation() }) }
    let timer = Task {
        try? await Task.sleep(for: limit)
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

extension Result where Failure == any Error {
    fileprivate init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// A value delivered once, by whichever of several producers comes first, and awaited once.
final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiter: CheckedContinuation<Value, Never>?
    }
    private let state = LockedValue(State())

    func deliver(_ value: Value) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, Never>? in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    var value: Value {
        get async {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Value? in
                    if let value = state.value { return value }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}

extension DispatchSemaphore {
    /// Waits for a signal at most ``TestWait/limit``; on time-out fails the test with `what` and
    /// returns `false`.
    @discardableResult
    public func waitOrFail(_ what: String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        if wait(timeout: TestWait.deadline) == .timedOut {
            XCTFail("timed out after \(TestWait.limit) waiting for \(what)", file: file, line: line)
            return false
        }
        return true
    }
}

/// Yields until `condition` holds, for state that changes without a signal to wait on; fails the
/// test and returns `false` after ``TestWait/limit``.
@discardableResult
public func waitUntil(
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

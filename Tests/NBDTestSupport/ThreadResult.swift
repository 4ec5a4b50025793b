import Dispatch
import Foundation
import NBDCore
import Synchronization
import XCTest

/// Runs a blocking call on a thread of its own, so a test can wait for its result for a bounded time:
/// a call that should return at once but blocks (a send that waits for a full socket) fails the test
/// instead of hanging it.
public final class ThreadResult<Value: Sendable>: Sendable {
    private let result = LockedValue<Value?>(nil)
    private let done = DispatchSemaphore(value: 0)

    /// Starts `body` on a new thread.
    public init(_ body: @escaping @Sendable () -> Value) {
        Thread.detachNewThread {
            let value = body()
            self.result.withLock { $0 = value }
            self.done.signal()
        }
    }

    /// The result, waiting at most ``TestWait/limit``; on time-out fails the test with `what` and
    /// returns `nil` (the call keeps running on its thread).
    public func value(_ what: String, file: StaticString = #filePath, line: UInt = #line) -> Value? {
        guard done.waitOrFail(what, file: file, line: line) else { return nil }
        return result.withLock { $0 }
    }
}

import NBDTestSupport
import XCTest

@testable import NBDServer

/// The registry that lets a connection cancel its slow requests when it ends without a DISC.
final class SlowRequestTasksTests: XCTestCase {
    func testCancelAllCancelsRunningTasksAndOnesRegisteredLater() async throws {
        let tasks = SlowRequestTasks()
        let first = tasks.reserveID()
        let running = Task { _ = try? await Task.sleep(for: .seconds(3600)) }
        tasks.register(first, running)
        tasks.cancelAll()
        try await withBoundedWait("the cancelled sleep to end") { await running.value }
        XCTAssertTrue(running.isCancelled)

        let late = Task { _ = try? await Task.sleep(for: .seconds(3600)) }
        tasks.register(tasks.reserveID(), late)
        XCTAssertTrue(late.isCancelled, "a task registered after cancelAll is cancelled at once")
        try await withBoundedWait("the late sleep to end") { await late.value }
    }

    func testATaskThatFinishedBeforeItWasRegisteredIsNotKept() async throws {
        let tasks = SlowRequestTasks()
        let id = tasks.reserveID()
        let done = Task {}
        await done.value
        tasks.finished(id)
        tasks.register(id, done)
        let other = Task { _ = try? await Task.sleep(for: .seconds(3600)) }
        let otherID = tasks.reserveID()
        tasks.register(otherID, other)
        tasks.finished(otherID)
        tasks.cancelAll()
        XCTAssertFalse(done.isCancelled, "the finished request was forgotten, not kept and cancelled")
        XCTAssertFalse(other.isCancelled, "a request that finished is not cancelled")
        other.cancel()
    }
}

import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// An executor like nbd-serve's for suspending requests: runs a job inline where the thread is
/// marked, and counts the jobs it had to hand elsewhere (run on the global executor).
private final class InlineOrElsewhereExecutor: TaskExecutor {
    let handedOn = Atomic<Int>(0)

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if InlineResumption.mayRunEnqueuedJob() {
            InlineResumption.run(unowned, on: asUnownedTaskExecutor())
        } else {
            handedOn.add(1, ordering: .relaxed)
            globalConcurrentExecutor.enqueue(unowned)
        }
    }
}

private final class ThreadRecord: Sendable {
    let thread = Atomic<UInt>(0)
}

private final class CountingAction: InlineResumption.BatchEndAction {
    var count = 0
    func batchEnded() { count += 1 }
}

final class InlineResumptionTests: XCTestCase {
    func testOutsideAScopeNothingIsMarked() {
        XCTAssertFalse(InlineResumption.isActive)
        XCTAssertFalse(InlineResumption.mayRunEnqueuedJob())
    }

    func testATaskStartedInAScopeRunsOnThisThreadBeforeItsCreationReturns() async {
        let executor = InlineOrElsewhereExecutor()
        let ran = ThreadRecord()
        let here = UInt(pthread_self())
        let task = InlineResumption.withScope {
            Task(executorPreference: executor) { ran.thread.store(UInt(pthread_self()), ordering: .relaxed) }
        }
        XCTAssertEqual(ran.thread.load(ordering: .relaxed), here, "the task ran inline, before Task() returned")
        await task.value
        XCTAssertEqual(executor.handedOn.load(ordering: .relaxed), 0)
    }

    func testATaskStartedOutsideAScopeIsHandedOn() async {
        let executor = InlineOrElsewhereExecutor()
        await Task(executorPreference: executor) {}.value
        XCTAssertEqual(executor.handedOn.load(ordering: .relaxed), 1)
    }

    func testLeaveOnNextSuspensionHandsOnExactlyOneJob() {
        InlineResumption.withScope {
            XCTAssertTrue(InlineResumption.isActive)
            InlineResumption.leaveOnNextSuspension()
            XCTAssertFalse(InlineResumption.mayRunEnqueuedJob(), "the next job leaves")
            XCTAssertTrue(InlineResumption.mayRunEnqueuedJob(), "only the next one")
        }
    }

    func testBatchEndActionsRunOnceAtEndBatchAndAtTheEndOfTheOutermostScope() {
        let owner = CountingAction()
        let action = CountingAction()
        InlineResumption.withScope(owner: owner) {
            XCTAssertTrue(InlineResumption.isOwned(by: owner))
            XCTAssertFalse(InlineResumption.isOwned(by: action))
            InlineResumption.atBatchEnd(action)
            InlineResumption.atBatchEnd(action)
            InlineResumption.endBatch()
            XCTAssertEqual(action.count, 1, "registered twice in one batch, run once")
            InlineResumption.atBatchEnd(action)
            InlineResumption.withScope {
                InlineResumption.atBatchEnd(action)
            }
            XCTAssertEqual(action.count, 1, "an inner scope does not end the batch")
        }
        XCTAssertEqual(action.count, 2, "leaving the outermost scope ends the batch")
        XCTAssertFalse(InlineResumption.isOwned(by: owner))
    }
}

import Foundation
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

@testable import NBDServer

#if canImport(Glibc)
    import Glibc
#endif

/// The budget type on its own: reservations, the order of waiters, a connection's share.
final class PayloadBudgetTests: XCTestCase {
    func testSmallPayloadsAreNeverChargedAndLargeOnesAtMostTheWholeBudget() {
        let budget = PayloadBudget(limit: 16 << 20)
        XCTAssertEqual(budget.charge(forPayload: 4096), 0)
        XCTAssertEqual(budget.charge(forPayload: PayloadBudget.chargeThreshold), 0)
        XCTAssertEqual(budget.charge(forPayload: PayloadBudget.chargeThreshold + 1), PayloadBudget.chargeThreshold + 1)
        XCTAssertEqual(budget.charge(forPayload: 8 << 20), 8 << 20)
        XCTAssertEqual(budget.charge(forPayload: 32 << 20), 16 << 20, "a request larger than the budget takes all of it")
        XCTAssertEqual(budget.connectionShare, 4 << 20)
    }

    func testNoLimitChargesNothing() {
        for limit in [nil, 0, -1] as [Int?] {
            let budget = PayloadBudget(limit: limit)
            XCTAssertTrue(budget.isUnlimited)
            XCTAssertEqual(budget.charge(forPayload: 32 << 20), 0)
        }
    }

    func testReservationsSucceedWhileTheyFitAndReleasesMakeRoom() {
        let budget = PayloadBudget(limit: 100)
        XCTAssertTrue(budget.tryReserve(60))
        XCTAssertFalse(budget.tryReserve(50))
        XCTAssertTrue(budget.tryReserve(40))
        XCTAssertEqual(budget.chargedBytes, 100)
        budget.release(60)
        XCTAssertTrue(budget.tryReserve(50))
        XCTAssertEqual(budget.chargedBytes, 90)
        XCTAssertEqual(budget.peakChargedBytes, 100)
    }

    func testAWaitingReservationIsGrantedWhenBytesAreReleased() async throws {
        let budget = PayloadBudget(limit: 100)
        XCTAssertTrue(budget.tryReserve(100))
        let granted = DispatchSemaphore(value: 0)
        startThread {
            budget.reserve(50)
            granted.signal()
        }
        await waitUntil("the reservation to queue") { budget.waitingConnections == 1 }
        XCTAssertEqual(budget.chargedBytes, 100, "nothing is taken while the budget is spent")
        budget.release(30)
        XCTAssertEqual(budget.chargedBytes, 70, "30 free bytes do not fit 50: the waiter stays queued")
        XCTAssertEqual(budget.waitingConnections, 1)
        budget.release(70)
        granted.waitOrFail("the waiting reservation")
        XCTAssertEqual(budget.chargedBytes, 50)
        XCTAssertEqual(budget.waitingConnections, 0)
    }

    func testWaitersAreServedInTheOrderTheyCameAndNewcomersQueueBehindThem() async throws {
        let budget = PayloadBudget(limit: 100)
        XCTAssertTrue(budget.tryReserve(100))
        let order = Recorded<Int>()
        let done = DispatchSemaphore(value: 0)
        for (index, bytes) in [80, 10].enumerated() {
            startThread {
                budget.reserve(bytes)
                order.append(bytes)
                done.signal()
            }
            await waitUntil("waiter \(index) to queue") { budget.waitingConnections == index + 1 }
        }
        XCTAssertFalse(budget.tryReserve(1), "a newcomer does not pass the queue")
        budget.release(30)
        // 70 charged: the 10 would fit, but it queued behind the 80, which does not yet.
        XCTAssertEqual(budget.chargedBytes, 70)
        XCTAssertEqual(budget.waitingConnections, 2)
        XCTAssertEqual(order.all, [])
        budget.release(70)
        done.waitOrFail("the first waiter")
        done.waitOrFail("the second waiter")
        XCTAssertEqual(Set(order.all), [80, 10])
        XCTAssertEqual(budget.chargedBytes, 90)
    }

    func testAConnectionTakesMoreWithoutWaitingOnlyWithinItsShare() {
        let budget = PayloadBudget(limit: 100)
        let connection = ConnectionPayloadCharges(budget: budget)
        XCTAssertTrue(connection.tryReserve(60), "a connection that holds nothing may take one request over its share")
        XCTAssertFalse(connection.tryReserve(10), "but nothing more while it holds that")
        connection.release(60)
        XCTAssertTrue(connection.tryReserve(10))
        XCTAssertTrue(connection.tryReserve(15))
        XCTAssertFalse(connection.tryReserve(1), "25 is its share of 100")
        XCTAssertTrue(ConnectionPayloadCharges(budget: budget).tryReserve(20), "another connection has its own")
        connection.chargeOutput(0)
        connection.release(25)
        XCTAssertEqual(connection.heldBytes, 0)
        XCTAssertEqual(budget.chargedBytes, 20)
    }

    func testOutputAndTailChargesFollowTheBufferAndAreReturnedOnce() {
        let budget = PayloadBudget(limit: 100)
        let connection = ConnectionPayloadCharges(budget: budget)
        XCTAssertTrue(connection.tryReserve(40))
        connection.chargeOutput(40)
        connection.moveOutputToTail()
        connection.releaseOutput()
        XCTAssertEqual(budget.chargedBytes, 40, "the charge moved with the buffer to the tail")
        connection.releaseTail()
        connection.releaseTail()
        XCTAssertEqual(budget.chargedBytes, 0)
        XCTAssertEqual(connection.heldBytes, 0)
    }

    func testBuffersAPoolKeepsAreChargedUpToHalfTheBudgetAndReclaimedForAWaiter() {
        let budget = PayloadBudget(limit: 8 << 20)
        let pool = PayloadPool(retainedLimit: 16 << 20, budget: budget)
        let buffers = (0..<6).map { _ in pool.take(1 << 20) }
        for buffer in buffers { pool.give(buffer) }
        XCTAssertEqual(pool.retainedBytes, 4 << 20, "kept only while the kept bytes fit half the budget")
        XCTAssertEqual(budget.chargedBytes, 4 << 20, "kept buffers are charged")
        let reused = pool.take(1 << 20)
        XCTAssertEqual(budget.chargedBytes, 3 << 20, "a buffer taken again is no longer charged as kept")
        pool.give(reused)
        XCTAssertTrue(budget.tryReserve(4 << 20))
        XCTAssertFalse(budget.tryReserve(1 << 20), "4 MiB kept and 4 MiB in use fill the budget")
        // A reservation that must wait first makes the pools give their kept buffers back.
        budget.reserve(4 << 20)
        XCTAssertEqual(pool.retainedBytes, 0)
        XCTAssertEqual(budget.chargedBytes, 8 << 20)
        budget.release(8 << 20)
        XCTAssertEqual(budget.chargedBytes, 0)
    }

    func testAPoolGivesItsChargeBackWhenItGoes() {
        let budget = PayloadBudget(limit: 8 << 20)
        do {
            let pool = PayloadPool(retainedLimit: 4 << 20, budget: budget)
            pool.give(pool.take(2 << 20))
            XCTAssertEqual(budget.chargedBytes, 2 << 20)
        }
        XCTAssertEqual(budget.chargedBytes, 0)
    }

    func testWaitsAreReportedAtMostOnceASecond() {
        let budget = PayloadBudget(limit: 100)
        XCTAssertTrue(budget.shouldReportWait())
        XCTAssertFalse(budget.shouldReportWait())
    }
}

/// Runs `body` on a thread of its own (the budget's waits block a thread, as a connection's do).
func startThread(_ body: @escaping @Sendable () -> Void) {
    let thread = Thread { body() }
    thread.start()
}

/// Values appended from any thread, read by the test.
final class Recorded<Value: Sendable>: Sendable {
    private let values = LockedValue<[Value]>([])

    func append(_ value: Value) {
        values.withLock { $0.append(value) }
    }

    var all: [Value] { values.withLock { $0 } }
}

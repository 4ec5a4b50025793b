import NBDCachingFilters
import NBDCore
import NBDTestSupport
import XCTest

/// The block locks' run form: every block of a run locked at once, including runs that wrap past
/// the last stripe.
final class BlockLocksTests: XCTestCase {
    func testARunLocksEveryStripeItCoversAndReleasesThemAll() async {
        let locks = BlockLocks(stripes: 4)
        // Blocks 6, 7, 8 use stripes 2, 3, 0: the run wraps.
        await locks.acquire(6..<9)
        XCTAssertFalse(locks.tryAcquire(2))
        XCTAssertFalse(locks.tryAcquire(3))
        XCTAssertFalse(locks.tryAcquire(4), "block 4 shares stripe 0 with block 8")
        XCTAssertTrue(locks.tryAcquire(1), "stripe 1 is not in the run")
        locks.release(1)
        locks.release(6..<9)
        for block: UInt64 in 0..<4 {
            XCTAssertTrue(locks.tryAcquire(block), "stripe \(block) was released")
        }
    }

    func testARunLongerThanTheStripesTakesEachStripeOnce() async {
        let locks = BlockLocks(stripes: 4)
        await locks.acquire(3..<13)
        for block: UInt64 in 0..<4 { XCTAssertFalse(locks.tryAcquire(block)) }
        locks.release(3..<13)
        for block: UInt64 in 0..<4 { XCTAssertTrue(locks.tryAcquire(block)) }
    }
}

import NBDServeCommand
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// nbd-serve's connection cap comes from the file-descriptor limit, not a fixed number.
final class ConnectionCapacityTests: XCTestCase {
    func testCapIsTheDescriptorLimitLessTheReserve() {
        XCTAssertEqual(ConnectionCapacity.maximumConnections(descriptorLimit: 1024), 1024 - 64)
        XCTAssertEqual(ConnectionCapacity.maximumConnections(descriptorLimit: 1 << 20), (1 << 20) - 64)
        XCTAssertEqual(ConnectionCapacity.maximumConnections(descriptorLimit: 10), 1, "never below one")
        XCTAssertGreaterThan(
            ConnectionCapacity.maximumConnections(descriptorLimit: 1024), 64, "no longer the library's default of 64")
    }

    func testRaisingTheLimitLiftsTheSoftLimitToTheHardLimit() {
        var before = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &before), 0)
        let soft = ConnectionCapacity.raiseDescriptorLimit()
        var after = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &after), 0)
        XCTAssertEqual(soft, UInt64(after.rlim_cur))
        XCTAssertEqual(after.rlim_cur, before.rlim_max, "the soft limit is raised to the hard one")
    }
}

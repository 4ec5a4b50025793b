import Foundation
import NBDCore
import NBDFeatureFilters
import NBDTestSupport
import XCTest

/// The extentlist filter and its file format.
final class ExtentListFilterTests: XCTestCase {
    func testListedExtentsAndGapsAsHoles() async throws {
        let list = try ExtentList(parsing: "# allocated first megabyte\n0 1M\n\n2M 1M zero\n4M\t4096 3\n5M 0 hole\n")
        let filter = ExtentListFilter(wrapping: TestMemoryBackend(size: 8 << 20), list: list)
        XCTAssertTrue(filter.capabilities.canExtents)
        let extents = try await filter.extents(count: 8 << 20, at: 0, flags: [])
        XCTAssertEqual(
            extents,
            [
                .data(1 << 20), .hole(1 << 20), Extent(length: 1 << 20, flags: .zero), .hole(5 << 20),
            ])
        let value7 = try await filter.extents(count: 4096, at: (2 << 20) + 10, flags: [])
        XCTAssertEqual(value7, [Extent(length: 4096, flags: .zero)])
        let value8 = try await filter.extents(count: 100, at: 0, flags: [])
        XCTAssertEqual(value8, [.data(100)])
    }

    func testUnorderedExtentsAreSortedAndOverlapsRefused() throws {
        let list = try ExtentList(parsing: "1M 1M\n0 4096 hole,zero\n")
        XCTAssertEqual(list.extents(count: 3 << 20, at: 0), [.hole(1 << 20), .data(1 << 20), .hole(1 << 20)])
        XCTAssertThrowsError(try ExtentList(parsing: "0 1M\n512K 1M\n")) { error in
            XCTAssertTrue("\(error)".contains("overlap"), "\(error)")
        }
        XCTAssertThrowsError(try ExtentList(parsing: "0 1M\n12\n", source: "list.txt")) { error in
            XCTAssertTrue("\(error)".contains("list.txt line 2"), "\(error)")
        }
        XCTAssertThrowsError(try ExtentList(parsing: "0 1Q\n")) { error in
            XCTAssertTrue("\(error)".contains("1Q"), "\(error)")
        }
    }

    func testParameterIsRequiredAndTheFileMustBeReadable() throws {
        XCTAssertThrowsError(try ExtentListLayer(parameters: [:])) { error in
            XCTAssertTrue("\(error)".contains("extentlist=... is required"), "\(error)")
        }
        XCTAssertThrowsError(try ExtentListLayer(parameters: ["extentlist": "/nonexistent/list"])) { error in
            XCTAssertTrue("\(error)".contains("extentlist=/nonexistent/list"), "\(error)")
        }
    }
}

import NBDBackends
import NBDConnectionFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

final class ExportNameFilterTests: XCTestCase {
    let below = ListingProvider(
        exports: [ExportEntry(name: "one", description: "first"), ExportEntry(name: "two")], defaultName: "one")

    func stack(_ parameters: ParameterValues) throws -> FilterStack<ListingProvider> {
        FilterStack([try ExportNameLayer(parameters: parameters)], over: below)
    }

    func testKeepPassesTheListAndDefaultOfTheLayersBelow() async throws {
        let stack = try stack([:])
        let list = try await stack.listExports(ConnectionInfo())
        XCTAssertEqual(list, below.exports)
        let defaultName = try await stack.defaultExport(ConnectionInfo())
        XCTAssertEqual(defaultName, "one")
    }

    func testDefaultExportReplacesTheDefaultOfTheLayersBelow() async throws {
        let defaultName = try await stack(["default-export": "two"]).defaultExport(ConnectionInfo())
        XCTAssertEqual(defaultName, "two")
        let empty = try await stack(["default-export": ""]).defaultExport(ConnectionInfo())
        XCTAssertEqual(empty, "one", "an empty default-export keeps the choice below, as nbdkit")
    }

    func testListModes() async throws {
        let explicit = try await stack(["exportname-list": "explicit", "exportname": "a", "exportname": "b"])
            .listExports(ConnectionInfo())
        XCTAssertEqual(explicit.map(\.name), ["a", "b"])
        let empty = try await stack(["exportname-list": "empty"]).listExports(ConnectionInfo())
        XCTAssertEqual(empty, [])
        // "" stands for the default export; the server lists it under the stack's canonical name.
        let defaultOnly = try await stack(["exportname-list": "defaultonly"]).listExports(ConnectionInfo())
        XCTAssertEqual(defaultOnly.map(\.name), [""])
        let named = try await stack(["exportname-list": "defaultonly", "default-export": "d"]).listExports(
            ConnectionInfo())
        XCTAssertEqual(named.map(\.name), ["d"])
        let stack = try stack(["exportname-list": "error"])
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await stack.listExports(ConnectionInfo()) }, code: .notPermitted)
    }

    func testDescriptionModes() async throws {
        let fixed = try await stack(["exportdesc": "fixed:hello"]).listExports(ConnectionInfo())
        XCTAssertEqual(fixed.map(\.description), ["hello", "hello"])
        let none = try await stack(["exportdesc": "none"]).listExports(ConnectionInfo())
        XCTAssertEqual(none.map(\.description), ["", ""])
        let script = try await stack(["exportdesc": "script:echo \"size of $name\""]).listExports(ConnectionInfo())
        XCTAssertEqual(script.map(\.description), ["size of one", "size of two"])

        let backend = try await stack(["exportdesc": "fixed:opened"]).open(ConnectionInfo(exportName: "x"))
        XCTAssertEqual(backend.exportDescription, "opened")
        await backend.close()
        let kept = try await stack([:]).open(ConnectionInfo(exportName: "x"))
        XCTAssertNil(kept.exportDescription)
        await kept.close()
    }

    func testStrictRefusesNamesNotGivenBeforeOpeningBelow() async throws {
        let counter = OpenCounter()
        let stack = FilterStack(
            [
                try ExportNameLayer(parameters: ["exportname-strict": "true", "exportname": "a"]),
                CountingLayer(counter: counter),
            ],
            over: below)
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await stack.open(ConnectionInfo(exportName: "b")) },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("'b'") == true)
        XCTAssertEqual(counter.opens.load(ordering: .relaxed), 0)
        let backend = try await stack.open(ConnectionInfo(exportName: "a"))
        await backend.close()
        XCTAssertEqual(counter.opens.load(ordering: .relaxed), 1)
    }

    func testBadParametersNameTheParameterAndTheValues() {
        XCTAssertThrowsError(try ExportNameLayer(parameters: ["exportname-list": "some"])) { error in
            XCTAssertTrue("\(error)".contains("exportname-list=some"))
            XCTAssertTrue("\(error)".contains("defaultonly"))
        }
        XCTAssertThrowsError(try ExportNameLayer(parameters: ["exportdesc": "fancy"])) { error in
            XCTAssertTrue("\(error)".contains("exportdesc=fancy"))
            XCTAssertTrue("\(error)".contains("fixed:STRING"))
        }
        XCTAssertThrowsError(try ExportNameLayer(parameters: ["exportname-strict": "maybe"])) { error in
            XCTAssertTrue("\(error)".contains("exportname-strict=maybe"))
        }
    }
}

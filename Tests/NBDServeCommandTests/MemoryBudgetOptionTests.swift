import NBDServeCommand
import NBDServer
import XCTest

/// `--memory-budget=SIZE|none`: the server's payload memory budget.
final class MemoryBudgetOptionTests: XCTestCase {
    private func configured(_ line: String) throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        ServerSettings.configure(&configuration, from: try ServeOptions.parse(line.split(separator: " ").map(String.init)))
        return configuration
    }

    func testASizeSetsTheBudgetWithNbdkitSuffixes() throws {
        XCTAssertEqual(try configured("--memory-budget=512M memory 1M").payloadMemoryBudget, 512 << 20)
        XCTAssertEqual(try configured("memory 1M --memory-budget 2G").payloadMemoryBudget, 2 << 30)
        XCTAssertEqual(try configured("--memory-budget=65536 memory 1M").payloadMemoryBudget, 65536)
    }

    func testNoneOrZeroMeansNoLimitAndTheDefaultIsAQuarterOfMemory() throws {
        for value in ["none", "unlimited", "0", "NONE"] {
            XCTAssertNil(try configured("--memory-budget=\(value) memory 1M").payloadMemoryBudget, value)
        }
        XCTAssertEqual(try configured("memory 1M").payloadMemoryBudget, ServerConfiguration.defaultPayloadMemoryBudget)
    }

    func testAValueThatIsNotASizeIsRefusedWithTheFormat() {
        for value in ["lots", "-1", "12X", ""] {
            XCTAssertThrowsError(try configured("--memory-budget=\(value) memory 1M"), value) { error in
                XCTAssertTrue("\(error)".contains("512M or 4G, or none"), "\(error)")
            }
        }
    }

    func testHelpDescribesTheOption() {
        XCTAssertTrue(HelpText.usage.contains("--memory-budget=SIZE|none"))
        XCTAssertTrue(HelpText.synopsis.contains("[--memory-budget=SIZE|none]"))
    }
}

import Foundation
import XCTest

/// An interop test that makes its files and runs servers and clients with shell scripts in a
/// temporary directory of its own, removed after each test.
class ShellScriptTestCase: XCTestCase {
    /// The test's directory, where its scripts run.
    var directory: URL!

    override func setUpWithError() throws {
        try super.setUpWithError()
        directory = try InteropEnvironment.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
        try super.tearDownWithError()
    }

    /// `text` quoted for the shell.
    func q(_ text: String) -> String { InteropEnvironment.shellQuoted(text) }

    /// Runs `script` in the test's directory with $SERVE set, requiring success.
    @discardableResult
    func shell(_ script: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws
        -> InteropEnvironment.Result
    {
        let result = try InteropEnvironment.shell(script, in: directory)
        assertSucceeded(result, what, file: file, line: line)
        return result
    }
}

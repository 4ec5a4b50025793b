import NBDCore
import NBDServeCommand
import NBDServer
import XCTest

/// How nbd-serve's command line reaches the test-data backends: nbdkit's plugin names, the main
/// parameter given plainly (several times for split), and bad values refused at start naming the
/// parameter.
final class DataBackendsCommandLineTests: XCTestCase {
    private func plan(_ arguments: [String]) throws -> ExportPlan {
        try ExportPlan(try ServeOptions.parse(arguments))
    }

    func testEveryTestDataBackendIsInTheCatalog() {
        for name in ["null", "zero", "full", "ones", "pattern", "random", "sparse-random", "data", "split"] {
            XCTAssertNotNil(ServeCatalog.backend(named: name), name)
        }
    }

    func testSplitTakesEveryPlainArgumentAsAFileInOrder() throws {
        let split = try plan(["split", "a", "file=b", "c"])
        XCTAssertEqual(split.backendParameters.all("file"), ["a", "b", "c"])
    }

    /// (data takes unlisted parameters, its variables, so a second plain argument reaches it as a
    /// second data=, which it refuses at start: DataBackendTests.)
    func testOtherBackendsStillTakeOnePlainArgument() {
        for arguments in [["pattern", "1M", "2M"], ["null", "1M", "size=2M"]] {
            XCTAssertThrowsError(try plan(arguments), "\(arguments)") { error in
                let message = (error as? CommandLineError)?.message ?? "\(error)"
                XCTAssertTrue(
                    message.contains("unexpected argument") || message.contains("given twice"), message)
            }
        }
    }

    func testBadValuesAreRefusedAtStartNamingTheParameter() async {
        let cases: [([String], String)] = [
            (["full"], "size=... is required"),
            (["pattern", "1X"], "size="),
            (["ones", "1M", "byte=256"], "byte=256: expected a byte value from 0 to 255"),
            (["random", "1M", "seed=-1"], "seed=-1"),
            (["sparse-random", "1M", "percent=200"], "percent=200"),
            (["data", "1", "allocator=zstd"], "allocator=zstd"),
            (["data", "( 1"], "unmatched '('"),
            (["split", "/nonexistent/disk.img"], "/nonexistent/disk.img"),
            (["zero", "1M"], "takes no plain argument"),
        ]
        for (arguments, text) in cases {
            do {
                let server = try await plan(arguments).makeServer(configuration: ServerConfiguration())
                await server.shutdown()
                XCTFail("\(arguments) was accepted")
            } catch let error as CommandLineError {
                XCTAssertTrue(error.message.contains(text), "'\(error.message)' does not mention '\(text)'")
            } catch {
                XCTFail("\(arguments): unexpected error \(error)")
            }
        }
    }
}

import NBDCore
import NBDServer
import XCTest

final class CommandLineTests: XCTestCase {
    private func parse(_ line: String) throws -> ServeOptions {
        try ServeOptions.parse(line.split(separator: " ").map(String.init))
    }

    private func assertError(
        _ line: String, contains text: String, file: StaticString = #filePath, line number: UInt = #line
    ) {
        do {
            let options = try parse(line)
            _ = try ExportPlan(options).makeServer(configuration: ServerConfiguration())
            XCTFail("'\(line)' was accepted", file: file, line: number)
        } catch let error as CommandLineError {
            XCTAssertTrue(
                error.message.contains(text), "'\(error.message)' does not mention '\(text)'", file: file, line: number)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: number)
        }
    }

    func testOptionsMayComeBeforeOrAfterTheBackend() throws {
        let before = try parse("-U /tmp/s -r -v --filter=stats memory 1G statsfile=/tmp/x")
        let after = try parse("memory 1G statsfile=/tmp/x -U /tmp/s --filter stats -r -v")
        XCTAssertEqual(before, after)
        XCTAssertEqual(before.listen, .unix(path: "/tmp/s"))
        XCTAssertTrue(before.isReadOnly)
        XCTAssertTrue(before.isVerbose)
        XCTAssertEqual(before.backend, "memory")
        XCTAssertEqual(before.backendArgument, "1G")
        XCTAssertEqual(before.filters, ["stats"])
        XCTAssertEqual(before.parameters, [ServeOptions.Parameter(key: "statsfile", value: "/tmp/x")])
    }

    func testListenChoices() throws {
        XCTAssertEqual(try parse("-U - memory 1M").listen, .privateUnix)
        XCTAssertEqual(try parse("-p 0 memory 1M").listen, .tcp(host: "127.0.0.1", port: 0))
        XCTAssertEqual(try parse("-p 10810 -i ::1 memory 1M").listen, .tcp(host: "::1", port: 10810))
        XCTAssertEqual(try parse("memory 1M").listen, .tcp(host: "127.0.0.1", port: 10809))
        XCTAssertEqual(try parse("--unix=/tmp/a memory 1M").listen, .unix(path: "/tmp/a"))
    }

    func testFlagsAndRun() throws {
        let options = try ServeOptions.parse(["-f", "-rv", "--run", "nbdinfo \"$uri\"", "memory", "1M"])
        XCTAssertTrue(options.isReadOnly)
        XCTAssertTrue(options.isVerbose)
        XCTAssertEqual(options.runCommand, "nbdinfo \"$uri\"")
        XCTAssertEqual(try ServeOptions.parse(["--run=true", "memory", "1M"]).runCommand, "true")
    }

    func testHelpAndVersionNeedNoBackend() throws {
        XCTAssertTrue(try parse("--help").showsHelp)
        XCTAssertTrue(try parse("--version").showsVersion)
    }

    func testSizesUsePowersOf1024() throws {
        XCTAssertEqual(try parseSize("512"), 512)
        XCTAssertEqual(try parseSize("64K"), 64 << 10)
        XCTAssertEqual(try parseSize("64k"), 64 << 10)
        XCTAssertEqual(try parseSize("1M"), 1 << 20)
        XCTAssertEqual(try parseSize("2MiB"), 2 << 20)
        XCTAssertEqual(try parseSize("1G"), 1 << 30)
        XCTAssertEqual(try parseSize("3T"), 3 << 40)
        XCTAssertEqual(try parseSize("1P"), 1 << 50)
        XCTAssertEqual(try parseSize("7E"), 7 << 60)
        XCTAssertThrowsError(try parseSize("8E"), "above 2^63 - 1")
        XCTAssertThrowsError(try parseSize("1X"))
        XCTAssertThrowsError(try parseSize("G"))
        XCTAssertThrowsError(try parseSize("-1"))
        XCTAssertThrowsError(try parseSize("99999999999999999999"))
    }

    func testParametersGoToTheFirstFilterThatDeclaresThemThenToTheBackend() throws {
        let options = try parse(
            "--filter=multi-conn --filter=fua --filter=stats memory size=1G statsfile=/tmp/s multi-conn-mode=emulate fuamode=native statsthreshold=50"
        )
        let plan = try ExportPlan(options)
        XCTAssertEqual(plan.backend, .memory)
        XCTAssertEqual(plan.backendParameters, ["size": "1G"])
        XCTAssertEqual(plan.filters.map(\.name), ["multi-conn", "fua", "stats"])
        XCTAssertEqual(plan.filters[0].parameters, ["multi-conn-mode": "emulate"])
        XCTAssertEqual(plan.filters[1].parameters, ["fuamode": "native"])
        XCTAssertEqual(plan.filters[2].parameters, ["statsfile": "/tmp/s", "statsthreshold": "50"])
    }

    func testPositionalArgumentsMapToTheBackendsMainParameter() throws {
        XCTAssertEqual(try ExportPlan(parse("memory 1G")).backendParameters, ["size": "1G"])
        XCTAssertEqual(try ExportPlan(parse("file /tmp/disk.img")).backendParameters, ["file": "/tmp/disk.img"])
        let cache = try ExportPlan(parse("connection-cache size=32 init=Hello strictfua=true"))
        XCTAssertEqual(cache.backendParameters, ["size": "32", "init": "Hello", "strictfua": "true"])
    }

    func testMakesServersForEachBackend() throws {
        XCTAssertNoThrow(try ExportPlan(parse("memory 1G")).makeServer(configuration: ServerConfiguration()))
        XCTAssertNoThrow(
            try ExportPlan(parse("--filter=multi-conn connection-cache size=32 init=Hi strictfua=yes"))
                .makeServer(configuration: ServerConfiguration()))
    }

    func testMistakesAreClearErrors() {
        assertError("", contains: "no backend given")
        assertError("-r", contains: "no backend given")
        assertError("floppy 1M", contains: "unknown backend 'floppy'")
        assertError("--filter=cow memory 1M", contains: "unknown filter 'cow'")
        assertError("memory 1M colour=blue", contains: "unknown parameter 'colour'")
        assertError(
            "--filter=stats memory 1M fuamode=native statsfile=/dev/null", contains: "unknown parameter 'fuamode'")
        assertError("memory 1M size=2M", contains: "given twice")
        assertError("memory 1M 2M", contains: "unexpected argument '2M'")
        assertError("size=1M memory", contains: "before the backend")
        assertError("--frobnicate memory 1M", contains: "unknown option '--frobnicate'")
        assertError("memory 1M -U", contains: "needs a value")
        assertError("-U /tmp/s -p 1 memory 1M", contains: "cannot be combined")
        assertError("-p 70000 memory 1M", contains: "0 to 65535")
        assertError("memory", contains: "needs size=")
        assertError("memory 1Q", contains: "size suffix")
        assertError("file", contains: "needs file=")
        assertError("file /nonexistent/dir/disk.img", contains: "file backend")
        assertError("--filter=multi-conn memory 1M multi-conn-mode=sometimes", contains: "filter 'multi-conn'")
        assertError("--filter=stats memory 1M", contains: "statsfile")
        assertError("connection-cache size=4 init=toolong", contains: "connection-cache backend")
    }

    func testHelpListsBackendsFiltersAndTheirParameters() {
        let help = HelpText.usage
        for backend in BackendKind.all {
            XCTAssertTrue(help.contains(backend.name))
            for parameter in backend.parameters { XCTAssertTrue(help.contains(parameter.name + "=")) }
        }
        for filter in FilterRegistry.all {
            XCTAssertTrue(help.contains("--filter=\(filter.filterName)"))
            for parameter in filter.parameters { XCTAssertTrue(help.contains(parameter.name + "=")) }
        }
    }
}

import NBDCore
import XCTest

@testable import NBDScriptBackends

/// How a script's output and exit status become NBD answers: errno names on stderr, extent lines,
/// thread model names.
final class ScriptOutputParsingTests: XCTestCase {
    private func code(_ stderr: String) -> NBDError.Code {
        ScriptFailure.error(errorOutput: Array(stderr.utf8), context: "test").code
    }

    func testTheFirstWordOfStderrNamesTheErrnoInAnyCase() {
        XCTAssertEqual(code("ENOSPC Out of space\n"), .noSpace)
        XCTAssertEqual(code("eperm\n"), .notPermitted)
        XCTAssertEqual(code("ENOMEM"), .outOfMemory, "printf without a newline")
        XCTAssertEqual(code("ESHUTDOWN\nline one\nline two\n"), .shutdown)
        XCTAssertEqual(code("EINVAL bad offset"), .invalidArgument)
        XCTAssertEqual(code("ENOTSUP"), .notSupported)
        XCTAssertEqual(code("EOPNOTSUPP"), .notSupported)
        XCTAssertEqual(code("EROFS read-only"), .notPermitted, "sent as EPERM, as nbdkit sends it")
        XCTAssertEqual(code("EDQUOT"), .noSpace)
        XCTAssertEqual(code("EFBIG"), .noSpace)
    }

    func testAnythingElseOnStderrIsAnIOError() {
        XCTAssertEqual(code("EINVALID"), .ioError, "a longer word is not EINVAL")
        XCTAssertEqual(code("EPIPE"), .ioError, "not one of the errnos nbdkit recognises")
        XCTAssertEqual(code(""), .ioError)
        XCTAssertEqual(code("dd: cannot open /nonexistent"), .ioError)
    }

    func testTheMessageIsTheFirstLineAfterTheErrnoName() {
        let error = ScriptFailure.error(
            errorOutput: Array("ENOSPC  disk is full\nsecond line\n".utf8), context: "eval: pwrite")
        XCTAssertEqual(error.message, "eval: pwrite: disk is full (ENOSPC)")
        let silent = ScriptFailure.error(errorOutput: [], context: "eval: pread")
        XCTAssertTrue(silent.message.contains("without a message"), silent.message)
    }

    func testExportListsInEachFormOfNbdkit() {
        XCTAssertEqual(ExportListOutput.parse(Array("a\nb\n".utf8)), [ExportEntry(name: "a"), ExportEntry(name: "b")])
        XCTAssertEqual(ExportListOutput.parse(Array("NAMES\na\n\n".utf8)), [ExportEntry(name: "a"), ExportEntry(name: "")])
        XCTAssertEqual(
            ExportListOutput.parse(Array("INTERLEAVED\na\nfirst\nb\n".utf8)),
            [ExportEntry(name: "a", description: "first"), ExportEntry(name: "b")], "a name without its description")
        XCTAssertEqual(
            ExportListOutput.parse(Array("NAMES+DESCRIPTIONS\na\nb\nfirst\nsecond".utf8)),
            [ExportEntry(name: "a", description: "first"), ExportEntry(name: "b", description: "second")])
        XCTAssertEqual(ExportListOutput.parse([]), [])
        XCTAssertEqual(ExportListOutput.parse(Array("NAMES\n".utf8)), [], "an empty list")
    }

    func testExtentLinesAreClippedToTheRequestAndMerged() throws {
        let output = Array("0 1M\n1M 512K hole,zero\n1536K 512K 3\n2M 2M 0\n".utf8)
        let extents = try ExtentList.parse(output, count: 1 << 20, offset: 512 << 10, context: "test")
        XCTAssertEqual(
            extents, [.data(512 << 10), .hole(512 << 10)], "1M..2M is one hole: two lines with the same flags")
        let tail = try ExtentList.parse(output, count: 4 << 20, offset: 3 << 20, context: "test")
        XCTAssertEqual(tail, [.data(1 << 20)])
    }

    func testExtentTypesAreNumbersOrWords() throws {
        let output = Array("0 10 1\n10 10 zero\n20 10\n".utf8)
        let extents = try ExtentList.parse(output, count: 30, offset: 0, context: "test")
        XCTAssertEqual(
            extents,
            [Extent(length: 10, flags: .hole), Extent(length: 10, flags: .zero), .data(10)])
    }

    func testExtentsThatLeaveAGapOrStartLateAreAnIOError() {
        XCTAssertThrowsError(try ExtentList.parse(Array("0 10\n20 10\n".utf8), count: 30, offset: 0, context: "t")) {
            XCTAssertEqual(($0 as? NBDError)?.code, .ioError)
        }
        XCTAssertThrowsError(try ExtentList.parse(Array("10 10\n".utf8), count: 30, offset: 0, context: "t"))
        XCTAssertThrowsError(try ExtentList.parse(Array("".utf8), count: 30, offset: 0, context: "t"))
        XCTAssertThrowsError(try ExtentList.parse(Array("0 ten\n".utf8), count: 30, offset: 0, context: "t"))
    }

    func testThreadModelNamesAreNbdkitsWithUnderscoresOrDashes() {
        XCTAssertEqual(ThreadModel(printed: "parallel\n"), .parallel)
        XCTAssertEqual(ThreadModel(printed: "serialize-requests"), .serializeRequests)
        XCTAssertEqual(ThreadModel(printed: "SERIALIZE_ALL_REQUESTS\n"), .serializeAllRequests)
        XCTAssertEqual(ThreadModel(printed: "serialize_connections"), .serializeConnections)
        XCTAssertEqual(ThreadModel(printed: "fast please"), .serializeAllRequests, "unknown: the safe default")
    }

    func testFlagsArgumentListsNbdkitsWordsInOrder() {
        XCTAssertEqual(ScriptBackend.flagsArgument([]), "")
        XCTAssertEqual(ScriptBackend.flagsArgument(.fua), "fua")
        XCTAssertEqual(ScriptBackend.flagsArgument([.fua, .fastZero], mayTrim: true), "fua,may_trim,fast")
        XCTAssertEqual(ScriptBackend.flagsArgument(.requestOne), "req_one")
    }
}

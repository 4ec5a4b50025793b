import Foundation
import XCTest

/// retry and retry-request through nbd-serve with python libnbd, the error filter below them (its
/// trigger file makes the fault come and go) and the log filter between them counting every attempt.
///
/// No timing is assumed: the client removes the trigger only after the log shows a failed attempt,
/// and the retry count is set high enough that the fault is always gone before it runs out; the
/// bounded tests keep the fault and count the attempts.
final class RetryInteropTests: XCTestCase {
    private func faultComesAndGoes(filter: String, parameters: [String]) throws -> (stdout: String, log: String) {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("attempts.log").path
        let trigger = directory.appendingPathComponent("fault").path
        let command = try InteropEnvironment.pythonCommand(
            """
            import nbd, os, time
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            h.pwrite(b"before the fault", 0)
            open(\(pythonString(trigger)), "w").close()
            buffer = nbd.Buffer(16)
            cookie = h.aio_pread(buffer, 0)
            # Wait (bounded) until the log shows the read failed at least once, then end the fault.
            deadline = time.monotonic() + 30
            while "error=EIO" not in open(\(pythonString(log))).read():
                if time.monotonic() > deadline:
                    raise SystemExit("no failed attempt was logged")
                h.poll(0)
                time.sleep(0.001)
            os.remove(\(pythonString(trigger)))
            while not h.aio_command_completed(cookie):
                h.poll(-1)
            print("read ok")
            print(bytes(buffer.to_bytearray()).decode())
            h.shutdown()
            """, in: directory)
        let result = try InteropEnvironment.serve(
            [
                "--filter=\(filter)", "--filter=log", "--filter=error", "memory", "1M", "logfile=\(log)",
                "error-pread-rate=100%", "error-pread-file=\(trigger)",
            ] + parameters,
            run: command)
        assertSucceeded(result, filter)
        return (result.stdout, try String(contentsOfFile: log, encoding: .utf8))
    }

    private func pythonString(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }

    private func failedReads(_ log: String) -> Int {
        log.split(separator: "\n").filter { $0.contains("...Read id=") && $0.contains("error=EIO") }.count
    }

    private func connects(_ log: String) -> Int {
        log.split(separator: "\n").filter { $0.contains(" Connect export=") }.count
    }

    func testRetryReopensUntilTheFaultIsGoneAndTheClientSeesSuccess() throws {
        let (stdout, log) = try faultComesAndGoes(
            filter: "retry", parameters: ["retries=100000", "retry-delay=1ms", "retry-exponential=no"])
        XCTAssertEqual(stdout.split(separator: "\n"), ["read ok", "before the fault"])
        let failures = failedReads(log)
        XCTAssertGreaterThanOrEqual(failures, 1)
        XCTAssertEqual(connects(log), failures + 1, "one reopen of the layers below per failed attempt:\n\(log)")
    }

    func testRetryRequestRepeatsUntilTheFaultIsGoneWithoutReopening() throws {
        let (stdout, log) = try faultComesAndGoes(
            filter: "retry-request", parameters: ["retry-request-retries=100000", "retry-request-delay=1ms"])
        XCTAssertEqual(stdout.split(separator: "\n"), ["read ok", "before the fault"])
        XCTAssertGreaterThanOrEqual(failedReads(log), 1)
        XCTAssertEqual(connects(log), 1, "retry-request never reopens:\n\(log)")
    }

    private func persistentFault(filter: String, parameters: [String]) throws -> (stdout: String, log: String) {
        try InteropEnvironment.require("python3-libnbd")
        let directory = try InteropEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("attempts.log").path
        let command = try InteropEnvironment.pythonCommand(
            """
            import nbd, os, errno
            h = nbd.NBD()
            h.connect_uri(os.environ["uri"])
            try:
                h.pread(512, 0)
                print("read ok")
            except nbd.Error as e:
                print("read", errno.errorcode.get(e.errnum, e.errnum))
            h.pwrite(b"x" * 512, 0)
            print("write ok")
            """, in: directory)
        let result = try InteropEnvironment.serve(
            [
                "--filter=\(filter)", "--filter=log", "--filter=error", "memory", "1M", "logfile=\(log)",
                "error-pread-rate=100%",
            ] + parameters,
            run: command)
        assertSucceeded(result, filter)
        return (result.stdout, try String(contentsOfFile: log, encoding: .utf8))
    }

    func testRetryGivesUpAfterRetriesAndTheConnectionKeepsWorking() throws {
        let (stdout, log) = try persistentFault(filter: "retry", parameters: ["retries=3", "retry-delay=1ms"])
        XCTAssertEqual(stdout.split(separator: "\n"), ["read EIO", "write ok"])
        XCTAssertEqual(failedReads(log), 4, "the first attempt and three retries:\n\(log)")
        XCTAssertEqual(connects(log), 4)
    }

    func testRetryRequestGivesUpAfterItsRetries() throws {
        let (stdout, log) = try persistentFault(
            filter: "retry-request", parameters: ["retry-request-retries=3", "retry-request-delay=1ms"])
        XCTAssertEqual(stdout.split(separator: "\n"), ["read EIO", "write ok"])
        XCTAssertEqual(failedReads(log), 4, "the first attempt and three retries:\n\(log)")
        XCTAssertEqual(connects(log), 1)
    }
}
